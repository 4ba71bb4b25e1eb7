"""Measure this machine's matmul throughput and memory bandwidth and store them as the `host-cpu` entry.

    python -m effc.bench.measure_host            # measure and rewrite passes/data/hardware.json
    python -m effc.bench.measure_host --dry-run  # print the entry only

A CPU has no datasheet "peak" that a compiled model can reach, so the roofline for `host-cpu` uses
what torch's own kernels achieve here: the best of several large square matmuls per dtype (all
threads torch uses), and a large tensor copy for bandwidth (bytes read + bytes written per second,
STREAM "copy" convention). Other work on the machine lowers the figures (the load average is
recorded with them): rerun it on an idle machine, the one you profile for.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from effc.compiler.host_cpu import cpu_model, has_bf16_dot, vector_isa
from effc.passes.hardware import HARDWARE_JSON, read_table
from effc.runtime.benchmark import timed_runs

MATMUL_N = 2048
COPY_BYTES = 1 << 29  # 512 MiB: far larger than any CPU cache
REPEATS = 10
# The CPU model is hidden inside this VM; its TDP is estimated as a per-thread share of an EPYC 9654.
TDP_ESTIMATE_SOURCE = (
    "estimate: vCPU share of an AMD EPYC 9654 (default TDP 360 W, 192 threads; amd.com product page) = "
    "1.875 W per vCPU; the VM hides the exact CPU model, replace with the real part's TDP share"
)


def best_seconds(work: Callable[[], object], repeats: int = REPEATS) -> float:
    """The fastest of `repeats` timed runs, after one warm-up run."""
    return min(timed_runs(work, repeats=repeats, warmup=1))


def matmul_flops(dtype: torch.dtype, n: int = MATMUL_N) -> float:
    """FLOP/s (ops/s for int8) of an n x n x n matmul in `dtype`."""
    gen = torch.Generator().manual_seed(0)
    if dtype == torch.int8:
        a = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=gen)
        b = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=gen)
        seconds = best_seconds(lambda: torch._int_mm(a, b))
    else:
        a = torch.randn(n, n, generator=gen).to(dtype)
        b = torch.randn(n, n, generator=gen).to(dtype)
        seconds = best_seconds(lambda: torch.mm(a, b))
    return float(f"{2 * n**3 / seconds:.4g}")


def copy_bandwidth(nbytes: int = COPY_BYTES) -> float:
    """Bytes/s moved by a large tensor copy, counting the read and the write."""
    src = torch.ones(nbytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    return float(f"{2 * nbytes / best_seconds(lambda: dst.copy_(src)):.4g}")


def host_entry() -> dict[str, Any]:
    """The `host-cpu` entry of hardware.json, measured now."""
    threads = torch.get_num_threads()
    date = datetime.date.today().isoformat()
    load = os.getloadavg()[0]
    method = (
        f"measured {date} by bench/measure_host.py with torch {torch.__version__}, {threads} threads, "
        f"1-minute load average {load:.1f} before measuring"
    )
    f32 = matmul_flops(torch.float32)
    measured = {
        "f64": matmul_flops(torch.float64),
        "bf16": matmul_flops(torch.bfloat16),
        "int8": matmul_flops(torch.int8),
    }
    f16_torch = matmul_flops(torch.float16, n=256)  # slow in torch: a small size is enough to show it
    mm = f"best of {REPEATS} torch matmuls {MATMUL_N}x{MATMUL_N}x{MATMUL_N}"
    kernel = {"int8": "torch._int_mm"}
    peak = {
        dtype: {"dense": value, "source": f"{method}: {mm} ({kernel.get(dtype, dtype)})"}
        for dtype, value in measured.items()
    }
    peak["f32"] = {"dense": f32, "source": f"{method}: {mm} (f32)"}
    peak["tf32"] = {"dense": f32, "source": f"{method}: CPUs have no TF32; the f32 matmul figure"}
    peak["f16"] = {
        "dense": f32,
        "source": f"{method}: the f32 figure, since CPUs without AVX512-FP16 compute f16 in f32 (torch's "
        f"own f16 CPU matmul reached {f16_torch / 1e9:.2f} GFLOP/s, a library limit, not the hardware's)",
    }
    bandwidth = copy_bandwidth()
    vcpus = os.cpu_count() or 1
    return {
        "name": f"{cpu_model()} ({vcpus} vCPUs)",
        "kind": "cpu",
        "cpu_features": {  # `effc profile` notes when it runs on a CPU unlike this one
            "vector_isa": vector_isa(),
            "bf16_dot": has_bf16_dot(),
            "source": f"measured {date}: the flags of /proc/cpuinfo",
        },
        "peak_flops": {dtype: peak[dtype] for dtype in ("f64", "f32", "tf32", "bf16", "f16", "int8")},
        "memory_bandwidth": {
            "value": bandwidth,
            "source": f"{method}: best of {REPEATS} copies of {COPY_BYTES >> 20} MiB (read + write bytes per second)",
        },
        "memory_bytes": {
            "value": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "source": f"measured {date}: physical memory from sysconf",
        },
        "tdp_w": {"value": round(1.875 * vcpus, 3), "source": TDP_ESTIMATE_SOURCE},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the entry, do not write the table")
    parser.add_argument("--table", type=Path, default=HARDWARE_JSON, help="hardware.json to update")
    args = parser.parse_args(argv)
    entry = host_entry()
    print(json.dumps(entry, indent=2))
    if not args.dry_run:
        table = read_table(args.table)
        others = {k: v for k, v in table["devices"].items() if k != "host-cpu"}
        table["devices"] = {"host-cpu": entry} | others
        args.table.write_text(json.dumps(table, indent=2) + "\n")
        print(f"wrote host-cpu to {args.table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
