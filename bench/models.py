"""Benchmark the bundled real models: effc (IREE llvm-cpu) against torch eager and torch.compile.

MiniLM at sequence 128 and SmolLM2 prefill at 128 tokens, measured in one run on this machine.
Results go to bench/results/models.json and models.md with the machine's description, so numbers
from different machines are never mixed up.

    python -m effc.bench.models [--repeats 10] [--models minilm,smollm2]
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from effc.compiler.api import compile_model
from effc.compiler.fileio import write_atomic
from effc.compiler.progress import Stages
from effc.runtime.benchmark import benchmark_compiled

RESULTS = Path(__file__).parent / "results"


def run(models: list[str], repeats: int) -> list[dict[str, object]]:
    rows = []
    for name in models:
        compiled = compile_model(name, progress=True)
        with Stages().stage(f"benchmark {name}"):
            rows.append(benchmark_compiled(compiled, repeats=repeats))
        del compiled
    return rows


def markdown(rows: list[dict[str, object]], when: str) -> str:
    machine = rows[0]["machine"]
    lines = [
        f"# Bundled models on {machine['cpu']} ({machine['cores']} cores), {when}",  # type: ignore[index]
        "",
        "Median latency per call; effc = IREE llvm-cpu via iree-benchmark-module. Speedup > 1: effc is faster.",
        "",
        "| model | input | effc ms | eager ms | torch.compile ms | vs eager | vs torch.compile |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['inputs']} | {r['effc_ms']:.2f} | {r['eager_ms']:.2f} | {r['torch_compile_ms']:.2f} "
            f"| {r['speedup_vs_eager']:.2f}x | {r['speedup_vs_torch_compile']:.2f}x |"
        )
    lines += ["", f"Machine: `{json.dumps(machine)}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--models", default="minilm,smollm2")
    args = parser.parse_args()
    rows = run(args.models.split(","), args.repeats)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    RESULTS.mkdir(exist_ok=True)
    write_atomic(RESULTS / "models.json", json.dumps({"measured": when, "results": rows}, indent=2) + "\n")
    write_atomic(RESULTS / "models.md", markdown(rows, when))
    print(markdown(rows, when))


if __name__ == "__main__":
    main()
