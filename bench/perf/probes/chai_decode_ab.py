"""SmolLM2's decode step (2048 context) under `-O`, with and without CHAI, timed in alternating rounds in one process.

    python bench/perf/probes/chai_decode_ab.py --precision medium [--variants plain,before,chai] [--rounds 10]

Variants: `plain` is `effc compile -O` of the step; `chai` puts effc-chai (the budget plan of
bench/chai/results/chai.json) in front of -O's passes; `before` is `chai` without effc-split-concat-matmul and
effc-fold-broadcast-bmm (-O as it was before they read CHAI's step). Each round calls every module 3 times
(median), in turn, so a VM whose speed drifts moves them together; the per-round ratio to the first variant is what
to read (bench/perf/NOTES.md, twenty-fourth session). CHAI's modules take the K caches it narrowed: here the first
heads of each cache, which times the same as the heads CHAI keeps (the outputs agree between CHAI variants, not with
`plain`'s).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import iree.runtime as rt
import numpy as np

from effc.bench.perf.workloads import WORKLOADS
from effc.compiler.api import CompiledModel, compile_model
from effc.compiler.optimize import MATMUL_PRECISIONS, best_known
from effc.passes.pipeline import chain_pipelines
from effc.runtime.benchmark import median_seconds
from effc.runtime.runner import load_vmfb

_CHAI_RESULTS = Path(__file__).resolve().parents[2] / "chai" / "results" / "chai.json"
_LEFT_OUT_BEFORE = ("effc-split-concat-matmul", "effc-fold-broadcast-bmm")


def compile_variant(variant: str, plan: Path, precision: str) -> CompiledModel:
    """The decode step as `variant` compiles it (see the module docstring)."""
    module, inputs = WORKLOADS["smollm2-decode"].build()
    options = best_known("llvm-cpu")
    passes = options.pop("pipeline")
    if variant == "before":
        for name in _LEFT_OUT_BEFORE:
            passes = passes.replace(f",{name}", "")
    if variant != "plain":
        passes = chain_pipelines(f"builtin.module(effc-chai{{plan={plan}}})", passes)
    return compile_model(module, inputs, pipeline=passes, matmul_precision=precision, **options)


def fitted_inputs(compiled: CompiledModel) -> list[np.ndarray]:
    """The example inputs, each cut to the heads (axis 1) the module's argument keeps."""
    shapes = compiled.argument_shapes()
    assert shapes is not None, "the decode step's arguments are static"
    return [
        np.ascontiguousarray(array[:, : shape[1]]) if array.shape != shape else array
        for array, shape in zip(compiled.numpy_inputs(), shapes, strict=True)
    ]


def _call_ms(function: Any, arrays: list[Any], *, first: bool) -> float:
    """The median of 3 calls, in ms (one warm-up call before the first round)."""
    return median_seconds(lambda: function(*arrays), repeats=3, warmup=int(first)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=MATMUL_PRECISIONS, default="highest")
    parser.add_argument("--variants", default="plain,before,chai")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    calls = []
    with tempfile.TemporaryDirectory(prefix="effc-chai-ab-") as tmp:
        plan = Path(tmp) / "budget.json"
        plan.write_text(json.dumps(json.loads(_CHAI_RESULTS.read_text())["smollm2"]["plans"]["budget"]))
        for variant in args.variants.split(","):
            compiled = compile_variant(variant, plan, args.precision)
            path = Path(tmp) / f"{variant}.vmfb"
            compiled.save(path)
            context = load_vmfb(path)
            main_fn = context.modules.module["main"]
            arrays = [rt.asdevicearray(context.config.device, a) for a in fitted_inputs(compiled)]
            calls.append((variant, main_fn, arrays))
            print(f"{variant}: {'; '.join(compiled.notes)}", flush=True)
        times = np.array([[_call_ms(fn, arrays, first=r == 0) for _, fn, arrays in calls] for r in range(args.rounds)])
    for (variant, *_), column in zip(calls, times.T, strict=True):
        ratio = times[:, 0] / column
        print(
            f"{variant}: median {np.median(column):.2f} ms; first / {variant} per round {np.median(ratio):.3f} "
            f"({ratio.min():.2f}-{ratio.max():.2f})"
        )


if __name__ == "__main__":
    main()
