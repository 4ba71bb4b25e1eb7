"""Issue 8's performance set: effc against torch eager and torch.compile, in one run on one machine.

For each workload: effc's module timed by iree-benchmark-module (median of repeats, warm-up excluded),
torch eager and torch.compile timed in their own processes (median of repeats after warm-up), each
with its process's peak resident memory (VmHWM). Then the torch processes time torch and effc's modules
again, in alternating rounds, for ratios that a drifting machine leaves alone. Results:
bench/perf/results/<machine>.json and .md, with the machine named.

    python -m effc.bench.perf.run [--workloads attention-block,minilm] [--repeats 10] [--configs default,O]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from effc.bench.perf import cpu_slug
from effc.bench.perf.workloads import WORKLOADS
from effc.compiler.errors import EffcError
from effc.compiler.fileio import write_atomic
from effc.compiler.progress import Stages
from effc.runtime.benchmark import (
    ALTERNATING_CALLS,
    alternate,
    machine_description,
    round_ratios,
    time_torch,
    torch_dynamic_int8,
)
from effc.runtime.runner import benchmark_vmfb, process_status_kb, retain_freed_memory

RESULTS = Path(__file__).parent / "results"
# Configurations beyond "default" (plain `effc compile`) and "O" (`-O`): candidates for `-O` (NOTES.md).
# "O+..." adds to `-O`'s flags; other trials replace the option they name.
TRIALS: dict[str, dict[str, Any]] = {
    # O2/O3 fail on MiniLM's LayerNorm variance without a larger stack ("exceeded stack allocation limit").
    "O+O3": {"iree_flags": ("--iree-opt-level=O3", "--iree-llvmcpu-stack-allocation-limit=131072")},
    "O-ukernels": {"optional_iree_flags": ("--iree-dispatch-creation-data-tiling",)},
    "O+medium": {"matmul_precision": "medium"},
    "O+int8": {"matmul_precision": "int8"},
    # Eleventh CPU session: int8 with IREE's fused attention (online softmax) instead of the decomposed form.
    "O+int8+fused": {"matmul_precision": "int8", "attention": "fused"},
    "O+split": {"pipeline": "builtin.module(effc-split-projections)"},
    "O-hoist": {"pipeline": None},
    "O-hoist+medium": {"pipeline": None, "matmul_precision": "medium"},
    "O-fold": {"fold_gqa": False},
    # Fourth CPU session (NOTES.md): horizontal contraction fusion (CUDA's -O).
    "O+medium+hfuse": {
        "matmul_precision": "medium",
        "iree_flags": ("--iree-dispatch-creation-enable-fuse-horizontal-contractions",),
    },
    # Eighth CPU session: in-order FP reductions, as before `-O` reassociated them.
    "O-reassoc": {"iree_flags": ()},
}
# torch modes: each also at torch.set_float32_matmul_precision("medium"), effc's "medium" counterpart, and eager
# with torch.ao's dynamic int8 quantization of every nn.Linear, effc's "int8" counterpart.
TORCH_MODES = ("eager", "compile", "eager-medium", "compile-medium", "eager-int8")
# The torch modes measured beside effc configurations of each lower matmul precision.
PRECISION_MODES = {"medium": ("eager-medium", "compile-medium"), "int8": ("eager-int8",)}
TORCH_PRECISION_CAPTIONS = {
    "medium": 'torch at `torch.set_float32_matmul_precision("medium")`',
    "int8": "torch eager, `torch.ao.quantization.quantize_dynamic` on every nn.Linear (qint8)",
}


def config_options(config: str) -> dict[str, Any]:
    """`compile_model` options for a configuration: none, `-O`'s, or `-O`'s changed by a trial."""
    from effc.compiler.optimize import best_known
    from effc.passes.pipeline import chain_pipelines

    if config == "default":
        return {}
    options = best_known("llvm-cpu")
    for key, value in TRIALS.get(config, {}).items():
        if config.startswith("O+") and key == "pipeline":
            options[key] = chain_pipelines(value, options.get(key))
        elif config.startswith("O+") and isinstance(value, tuple):
            options[key] = (*options.get(key, ()), *value)
        else:
            options[key] = value
    return options


def json_options(options: dict[str, Any]) -> dict[str, Any]:
    """`compile_model` options as JSON: tuples as lists, dispatch edits (`ConfigEdit`) as their fields."""
    return {
        k: [dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x for x in v] if isinstance(v, tuple) else v
        for k, v in options.items()
    }


def torch_child(workload: str, mode: str, repeats: int, vmfbs: list[Path]) -> None:
    """Child process: build the workload, time it in eager or torch.compile mode, print JSON. With `vmfbs`, then
    also time torch and those effc modules in alternating rounds (`alternate`)."""
    retain_freed_memory()  # the heap policy effc's module runs under (benchmark_vmfb's tool_environment)
    fn, inputs = torch_callable(mode, *WORKLOADS[workload].build())
    start = time.perf_counter()
    with torch.no_grad():
        fn(*inputs)
    first_call_s = time.perf_counter() - start
    median_s = time_torch(fn, inputs, repeats=repeats)
    peak_mb = process_status_kb("VmHWM") / 1024  # before any effc module is loaded
    result: dict[str, Any] = {"median_ms": median_s * 1e3, "first_call_s": first_call_s, "peak_rss_mb": peak_mb}
    if vmfbs:
        result["alternating"] = alternate(fn, inputs, vmfbs, rounds=repeats)
    print(json.dumps(result))


def torch_callable(
    mode: str, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]
) -> tuple[Callable[..., Any], tuple[torch.Tensor, ...]]:
    """The workload as `mode` (TORCH_MODES) runs it: eager or torch.compile, at f32 matmul precision "highest" or
    "medium", or eager with dynamic int8 Linears. Sets torch's matmul precision for this process."""
    kind, _, precision = mode.partition("-")
    torch.set_float32_matmul_precision("medium" if precision == "medium" else "highest")
    if precision == "int8":
        module = torch_dynamic_int8(module, inplace=True)  # the f32 Linears go as their int8 copies come
    return (torch.compile(module) if kind == "compile" else module), inputs


def measure_torch(workload: str, mode: str, repeats: int, vmfbs: list[Path]) -> dict[str, Any]:
    alternate_with = ["--alternate", ",".join(map(str, vmfbs))] if vmfbs else []
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "effc.bench.perf.run",
            "--child",
            mode,
            "--workloads",
            workload,
            "--repeats",
            str(repeats),
            *alternate_with,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(
    workloads: list[str], configs: list[str], repeats: int, save: Callable[[list[dict[str, Any]]], None]
) -> list[dict[str, Any]]:
    """Measure every workload and configuration; `save` gets the rows so far after each workload."""
    from effc.compiler.api import compile_model

    rows: list[dict[str, Any]] = []
    stages = Stages()
    precisions = {config_options(c).get("matmul_precision") for c in configs}
    modes = ("eager", "compile", *(m for p, found in PRECISION_MODES.items() if p in precisions for m in found))
    for key in workloads:
        module, inputs = WORKLOADS[key].build()
        with tempfile.TemporaryDirectory(prefix="effc-perf-") as tmp:
            effc_rows: dict[str, dict[str, Any]] = {}  # per configuration that compiled
            failed: dict[str, str] = {}
            for config in configs:
                try:
                    with stages.stage(f"{key}: effc compile ({config})"):
                        compiled = compile_model(module, inputs, target="llvm-cpu", **config_options(config))
                except EffcError as err:  # a configuration that does not compile is a result too
                    failed[config] = err.message
                    continue
                path = Path(tmp) / f"{config}.vmfb"
                path.write_bytes(compiled.vmfb or b"")
                with stages.stage(f"{key}: effc run ({config})"):
                    timing = benchmark_vmfb(path, compiled.numpy_inputs(), repetitions=repeats)
                    effc = {"median_ms": timing.median_s * 1e3, "peak_rss_mb": timing.peak_rss_mb}
                effc_rows[config] = {
                    "effc": effc,
                    "vmfb": path,
                    "notes": compiled.notes,
                    "max_relative_error": max(compiled.compare()),
                }
            vmfbs = [r["vmfb"] for r in effc_rows.values()]
            torch_ms = {}
            for mode in modes:
                alternating = vmfbs if mode in ("eager", "compile") else []
                with stages.stage(f"{key}: torch {mode}" + (" and effc in alternating rounds" if alternating else "")):
                    torch_ms[mode] = measure_torch(key, mode, repeats, alternating)
        eager, compiled_torch = torch_ms["eager"], torch_ms["compile"]
        for config in configs:
            options = config_options(config)
            row: dict[str, Any] = {
                "workload": key,
                "description": WORKLOADS[key].name,
                "config": config,
                "options": json_options(options),
                "eager": {k: v for k, v in eager.items() if k != "alternating"},
                "torch_compile": {k: v for k, v in compiled_torch.items() if k != "alternating"},
                **{
                    f"torch_{precision}": {mode: torch_ms[mode] for mode in found if mode in torch_ms}
                    for precision, found in PRECISION_MODES.items()
                },
            }
            if config in failed:
                rows.append(row | {"error": failed[config]})
                continue
            found = effc_rows[config]
            index = list(effc_rows).index(config)
            effc_ms = found["effc"]["median_ms"]
            rows.append(
                row
                | {k: v for k, v in found.items() if k != "vmfb"}
                | {
                    "speedup_vs_eager": eager["median_ms"] / effc_ms,
                    "speedup_vs_torch_compile": compiled_torch["median_ms"] / effc_ms,
                    "alternating": {
                        name: round_ratios(torch_ms[mode]["alternating"], index)
                        for name, mode in (("vs_eager", "eager"), ("vs_torch_compile", "compile"))
                    },
                }
            )
        save(rows)
    return rows


def markdown(rows: list[dict[str, Any]], machine: dict[str, Any], when: str) -> str:
    lines = [
        f"# effc performance set on {machine['cpu']} ({machine['cores']} cores, {machine['vector_isa']}), {when}",
        "",
        "Median ms per call (repeats after warm-up; inputs random, the decode step's KV cache real text). "
        "Peak = the process's peak resident memory (VmHWM).",
        "Speedup > 1 means effc is faster.",
        "",
        "| workload | effc config | effc ms | eager ms | torch.compile ms | vs eager | vs torch.compile "
        "| effc peak MB | eager peak MB | compile peak MB | max rel err |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        g, c = r["eager"], r["torch_compile"]
        if "error" in r:
            failed = f"did not compile: {r['error'][:120]}"
            cells = [r["description"], r["config"], failed, f"{g['median_ms']:.2f}", f"{c['median_ms']:.2f}", *[""] * 6]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        e = r["effc"]
        lines.append(
            f"| {r['description']} | {r['config']} | {e['median_ms']:.2f} | {g['median_ms']:.2f} "
            f"| {c['median_ms']:.2f} "
            f"| {r['speedup_vs_eager']:.2f}x | {r['speedup_vs_torch_compile']:.2f}x | {e['peak_rss_mb']:.0f} "
            f"| {g['peak_rss_mb']:.0f} | {c['peak_rss_mb']:.0f} | {r['max_relative_error']:.1e} |"
        )
    for precision, modes in PRECISION_MODES.items():
        found = {r["description"]: r[f"torch_{precision}"] for r in rows if r.get(f"torch_{precision}")}
        if found:
            lines += [
                "",
                f"{TORCH_PRECISION_CAPTIONS[precision]}, effc's `--matmul-precision {precision}` counterpart, "
                "same run:",
                "",
                "| workload | " + " | ".join(f"{mode} ms | {mode} peak MB" for mode in modes) + " |",
                "|---|" + "---:|" * 2 * len(modes),
                *[
                    f"| {name} | "
                    + " | ".join(f"{torch[m]['median_ms']:.2f} | {torch[m]['peak_rss_mb']:.0f}" for m in modes)
                    + " |"
                    for name, torch in found.items()
                ],
            ]
    alternating = [r for r in rows if "alternating" in r]
    if alternating:
        lines += [
            "",
            f"The same modules timed in alternating rounds of {ALTERNATING_CALLS} calls a side, in torch's process "
            "(effc through IREE's Python runtime): medians of the round medians, and torch's time over effc's round "
            "by round, median (min-max). This VM's speed drifts within minutes; these ratios are what the drift "
            "leaves alone.",
            "",
            "| workload | effc config | rounds | effc ms | eager ms | vs eager | effc ms | torch.compile ms "
            "| vs torch.compile |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in alternating:
            g, c = r["alternating"]["vs_eager"], r["alternating"]["vs_torch_compile"]
            lines.append(
                f"| {r['description']} | {r['config']} | {c['rounds']} | {g['effc_ms']:.2f} | {g['torch_ms']:.2f} "
                f"| {g['median']:.2f}x ({g['min']:.2f}-{g['max']:.2f}) | {c['effc_ms']:.2f} | {c['torch_ms']:.2f} "
                f"| {c['median']:.2f}x ({c['min']:.2f}-{c['max']:.2f}) |"
            )
    notes = [f"- {r['description']}, {r['config']}: {n}" for r in rows for n in r.get("notes", [])]
    if notes:
        lines += ["", "Notes from the compiler:", "", *notes]
    return "\n".join([*lines, "", f"Machine: `{json.dumps(machine)}`", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument(
        "--configs", default="default,O", help=f"effc configurations: default, O (compile -O), {', '.join(TRIALS)}"
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--tag", default="", help="suffix for the results' file names (a trial beside the main table)")
    parser.add_argument("--child", choices=TORCH_MODES, help=argparse.SUPPRESS)
    parser.add_argument("--alternate", default="", help=argparse.SUPPRESS)  # the child's effc modules, by path
    args = parser.parse_args()
    if args.child:
        torch_child(args.workloads, args.child, args.repeats, [Path(p) for p in args.alternate.split(",") if p])
        return
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    RESULTS.mkdir(exist_ok=True)

    def save(rows: list[dict[str, Any]]) -> None:
        machine = machine_description()  # its load average, at the time of the latest row
        stem = "cpu-" + cpu_slug(machine) + (f"-{args.tag}" if args.tag else "")
        report = {"measured": when, "machine": machine, "rows": rows}
        write_atomic(RESULTS / f"{stem}.json", json.dumps(report, indent=2))
        write_atomic(RESULTS / f"{stem}.md", markdown(rows, machine, when))

    rows = run(args.workloads.split(","), args.configs.split(","), args.repeats, save)
    print(markdown(rows, machine_description(), when))


if __name__ == "__main__":
    main()
