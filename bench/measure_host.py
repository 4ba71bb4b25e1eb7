"""Measure this machine's matmul throughput and memory bandwidth and store them in the `host-cpu` entry.

    python -m effc.bench.measure_host            # measure and update passes/data/hardware.json
    python -m effc.bench.measure_host --dry-run  # print the measurement only

The entry keeps one measurement per kind of CPU (vector ISA and bf16 support; passes/hardware.py): this one
replaces an earlier measurement of a CPU like this one, and is added beside those of other CPUs.

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

from effc.compiler.fileio import write_atomic
from effc.compiler.host_cpu import cpu_model, has_bf16_dot, vector_isa
from effc.passes.hardware import HARDWARE_JSON, read_table, same_cpu
from effc.runtime.benchmark import timed_runs, torch_dynamic_int8

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


def dynamic_int8_flops(n: int = MATMUL_N) -> float:
    """Ops/s of torch's dynamically quantized nn.Linear on an n x n input with n x n weights (u8 x s8 by fbgemm or
    oneDNN, with the input's quantization): torch's fast int8 path on CPUs where `torch._int_mm` has none (AVX2)."""
    gen = torch.Generator().manual_seed(0)
    linear = torch_dynamic_int8(torch.nn.Sequential(torch.nn.Linear(n, n, bias=False)))
    x = torch.randn(n, n, generator=gen)
    with torch.no_grad():
        seconds = best_seconds(lambda: linear(x))
    return float(f"{2 * n**3 / seconds:.4g}")


def copy_bandwidth(nbytes: int = COPY_BYTES) -> float:
    """Bytes/s moved by a large tensor copy, counting the read and the write."""
    src = torch.ones(nbytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    return float(f"{2 * nbytes / best_seconds(lambda: dst.copy_(src)):.4g}")


def host_entry() -> dict[str, Any]:
    """This CPU's measurement, as a `host-cpu` entry of hardware.json."""
    threads = torch.get_num_threads()
    date = datetime.date.today().isoformat()
    load = os.getloadavg()[0]
    method = (
        f"measured {date} by bench/measure_host.py with torch {torch.__version__}, {threads} threads, "
        f"1-minute load average {load:.1f} before measuring"
    )
    f32 = matmul_flops(torch.float32)
    int8_kernels = {"torch._int_mm": matmul_flops(torch.int8), "torch's dynamic int8 nn.Linear": dynamic_int8_flops()}
    int8_kernel = max(int8_kernels, key=lambda name: int8_kernels[name])
    measured = {"f64": matmul_flops(torch.float64), "int8": int8_kernels[int8_kernel]}
    kernel = {"int8": f"{int8_kernel}, the faster of {' and '.join(int8_kernels)}"}
    if has_bf16_dot():
        measured["bf16"] = matmul_flops(torch.bfloat16)
    mm = f"best of {REPEATS} torch matmuls {MATMUL_N}x{MATMUL_N}x{MATMUL_N}"
    peak = {
        dtype: {"dense": value, "source": f"{method}: {mm} ({kernel.get(dtype, dtype)})"}
        for dtype, value in measured.items()
    }
    peak["f32"] = {"dense": f32, "source": f"{method}: {mm} (f32)"}
    peak["tf32"] = {"dense": f32, "source": f"{method}: CPUs have no TF32; the f32 matmul figure"}
    small = 256  # torch's slow paths: a small size is enough to show them
    peak["f16"] = {
        "dense": f32,
        "source": f"{method}: the f32 figure, since CPUs without AVX512-FP16 compute f16 in f32 (torch's "
        f"own f16 CPU matmul reached {matmul_flops(torch.float16, n=small) / 1e9:.2f} GFLOP/s, a library limit, "
        "not the hardware's)",
    }
    if "bf16" not in peak:
        peak["bf16"] = {
            "dense": f32,
            "source": f"{method}: the f32 figure, since this CPU has no bf16 dot products and effc's "
            f"--matmul-precision medium stays f32 on it (torch's own bf16 matmul reached "
            f"{matmul_flops(torch.bfloat16, n=small) / 1e9:.2f} GFLOP/s)",
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


def with_measurement(host: dict[str, Any] | None, measured: dict[str, Any]) -> dict[str, Any]:
    """The `host-cpu` entry `host` with `measured` in place of its measurement of a CPU like this one (or of an
    unknown CPU), or beside the measurements of other CPUs."""
    if host is None or "cpu_features" not in host or same_cpu(host["cpu_features"], measured["cpu_features"]):
        return measured | ({"other_cpus": host["other_cpus"]} if host and "other_cpus" in host else {})
    others = [m for m in host.get("other_cpus", []) if not same_cpu(m["cpu_features"], measured["cpu_features"])]
    return host | {"other_cpus": [*others, {key: value for key, value in measured.items() if key != "kind"}]}


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
        table["devices"] = {"host-cpu": with_measurement(table["devices"].get("host-cpu"), entry)} | others
        write_atomic(args.table, json.dumps(table, indent=2) + "\n")
        print(f"wrote this CPU's measurement to host-cpu in {args.table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
