"""What a search leaves behind: the final front measured on the test split, a table, plots, IR diffs.

Test-split numbers are computed only here, for the final front: each member is compiled and scored
in the isolated worker (which also keeps its .vmfb), then the members and the original are timed
in interleaved rounds with iree-benchmark-module, so slow drift of a shared machine hits all of them
alike, and each gets the median of its rounds.
"""

from __future__ import annotations

import difflib
import html
import io
import json
import shutil
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from effc.compiler.fileio import write_atomic
from effc.search.evaluate import Fitness, Job
from effc.search.genome import Genome, readable_text, replay
from effc.search.pool import LocalPool
from effc.search.problem import Problem
from effc.search.store import Store


@dataclass
class FrontMember:
    """One member of the final front (or the original), with validation and test numbers."""

    name: str
    key: str
    edits: list[str]
    config: dict[str, str]
    val_runtime_ms: float
    val_relative_runtime: float
    val_error: float
    test_error: float | None = None
    test_runtime_ms: float | None = None
    speedup: float | None = None
    status: str = "ok"


def ir_diff(original: str, genome: Genome) -> str:
    """The genome's edits, one per line, then a unified diff of the function body (ids as SSA names)."""
    before = readable_text(replay(original, Genome())).splitlines(keepends=True)
    after = readable_text(replay(original, genome)).splitlines(keepends=True)
    header = [f"// {e.describe()}\n" for e in genome.edits]
    header += [f"// compile gene {gene} = {choice}\n" for gene, choice in genome.config]
    return "".join(header) + "".join(difflib.unified_diff(before, after, "original.mlir", "candidate.mlir", n=2))


def genome_document(genome: Genome, store: Store) -> dict[str, Any]:
    """A genome file `effc search --apply` reads: the genome plus the problem it applies to."""
    config = store.config()
    return {
        "workload": config["workload"],
        "target": config["target"],
        "problem": store.digest,
        "key": genome.key,
        **genome.to_json(),
    }


def measure_front(
    problem: Problem,
    members: list[tuple[Genome, Fitness]],
    directory: Path,
    *,
    workers: int,
    timeout_s: float,
    rounds: int,
) -> list[FrontMember]:
    """Compile and score each member (the original first) on the test split, then time them in rounds."""
    from effc.runtime.runner import benchmark_vmfb

    shutil.rmtree(directory, ignore_errors=True)  # members of an earlier report of this search
    directory.mkdir(parents=True)
    names = ["original"] + [f"{rank:02d}-{genome.key}" for rank, (genome, _) in enumerate(members[1:], 1)]
    jobs = []
    for name, (genome, _) in zip(names, members, strict=True):
        (directory / name).mkdir(exist_ok=True)
        jobs.append(Job(genome.to_json(), split="test", repetitions=0, vmfb_out=str(directory / name / "model.vmfb")))
    pool = LocalPool(problem.to_bytes(), workers, timeout_s)
    try:
        tested = dict(pool.evaluate(jobs))
    finally:
        pool.close()
    rows = []
    for i, (name, (genome, fitness)) in enumerate(zip(names, members, strict=True)):
        assert fitness.runtime_s is not None and fitness.relative_runtime is not None and fitness.error is not None
        rows.append(
            FrontMember(
                name,
                genome.key,
                [e.describe() for e in genome.edits],
                dict(genome.config),
                fitness.runtime_s * 1e3,
                fitness.relative_runtime,
                fitness.error,
                tested[i].error,
                status=tested[i].status,
            )
        )
    timed = [(row, Path(jobs[i].vmfb_out)) for i, row in enumerate(rows) if row.status == "ok"]
    inputs = problem.test.batches[0]
    samples: dict[str, list[float]] = {row.key: [] for row, _ in timed}
    for _ in range(rounds):
        for row, path in timed:
            samples[row.key].append(benchmark_vmfb(path, inputs, repetitions=1).median_s)
    for row, _ in timed:
        row.test_runtime_ms = statistics.median(samples[row.key]) * 1e3
    base = rows[0].test_runtime_ms
    for row in rows:
        row.speedup = base / row.test_runtime_ms if base and row.test_runtime_ms else None
    return rows


def front_markdown(rows: list[FrontMember], problem: Problem) -> str:
    """The front as a markdown table (accuracy for classifiers, relative error otherwise)."""
    accuracy = problem.error_kind == "accuracy"
    metric = "accuracy %" if accuracy else "rel. error"
    lines = [
        f"| member | edits | compile genes | val time vs original | val {metric} | test ms | test {metric} | speedup |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {len(row.edits)} | {', '.join(f'{k}={v}' for k, v in row.config.items()) or '-'} "
            f"| {row.val_relative_runtime:.2f}x | {_metric(row.val_error, accuracy)} "
            f"| {_num(row.test_runtime_ms, '.3f')} | {_metric(row.test_error, accuracy)} "
            f"| {_num(row.speedup, '.2f')}x |"
        )
    return "\n".join(lines) + "\n"


def _metric(error: float | None, accuracy: bool) -> str:
    if error is None:
        return "-"
    return f"{100 * (1 - error):.2f}" if accuracy else f"{error:.2e}"


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def progress_figure(store: Store, front_keys: set[str]) -> Any:
    """Runtime against error of every valid candidate, coloured by generation, the front outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(f.relative_runtime, f.error, g, genome.key) for genome, f, g in store.evaluations() if f.ok]
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    if points:
        xs, ys, gens, _ = zip(*points, strict=True)
        scatter = axes.scatter(xs, ys, c=gens, cmap="viridis", s=18, alpha=0.8)
        figure.colorbar(scatter, ax=axes, label="generation")
        front = sorted((x, y) for x, y, _, k in points if k in front_keys)
        if front:
            axes.step(*zip(*front, strict=True), where="post", color="crimson", label="Pareto front")
        base = next(((x, y) for x, y, _, k in points if k == Genome().key), None)
        if base:
            axes.scatter([base[0]], [base[1]], marker="*", s=160, color="black", label="original")
        axes.legend(loc="upper right")
    axes.set_xlabel("runtime relative to the original (validation batch, timed alternately)")
    axes.set_ylabel("validation error")
    axes.set_title(f"{store.config()['workload']}: runtime vs error across generations")
    figure.tight_layout()
    return figure


def write_report(
    directory: Path, store: Store, problem: Problem, rows: list[FrontMember], stats: list[dict[str, Any]]
) -> dict[str, Path]:
    """front.json, front.md, progress.png, progress.html, and per member genome.json + edits.diff."""
    directory.mkdir(parents=True, exist_ok=True)
    members = directory / "front"
    for row in rows:
        genome = store.genome(row.key)
        write_atomic(members / row.name / "genome.json", json.dumps(genome_document(genome, store), indent=2) + "\n")
        write_atomic(members / row.name / "edits.diff", ir_diff(problem.original, genome))
    table = front_markdown(rows, problem)
    write_atomic(directory / "front.md", table)
    write_atomic(
        directory / "front.json",
        json.dumps({"front": [asdict(r) for r in rows], "generations": stats}, indent=2) + "\n",
    )
    figure = progress_figure(store, {r.key for r in rows})
    figure.savefig(directory / "progress.png")
    svg = io.StringIO()
    figure.savefig(svg, format="svg")
    import matplotlib.pyplot as plt

    plt.close(figure)
    write_atomic(directory / "progress.html", _html(store, table, svg.getvalue(), stats))
    return {"table": directory / "front.md", "png": directory / "progress.png", "html": directory / "progress.html"}


def _html(store: Store, table_md: str, svg: str, stats: list[dict[str, Any]]) -> str:
    """One self-contained page: the plot as inline SVG, the front table, per-generation statistics."""
    rows = [line.strip("|").split("|") for line in table_md.strip().splitlines() if not line.startswith("|---")]
    table = "".join(
        "<tr>"
        + "".join(f"<{'th' if i == 0 else 'td'}>{html.escape(c.strip())}</{'th' if i == 0 else 'td'}>" for c in r)
        + "</tr>"
        for i, r in enumerate(rows)
    )
    columns = ["generation", "candidates", "evaluated", "cache_hits", "invalid", "best_relative_runtime", "front_size"]
    generations = (
        "<tr>"
        + "".join(f"<th>{c}</th>" for c in columns)
        + "</tr>"
        + "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(s.get(c, '')))}</td>" for c in columns) + "</tr>" for s in stats
        )
    )
    config = html.escape(json.dumps(store.config(), indent=1))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>effc search</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>"
        f"<h1>effc search: {html.escape(store.config()['workload'])}</h1>{svg}"
        f"<h2>Pareto front (test split)</h2><table>{table}</table>"
        f"<h2>Generations</h2><table>{generations}</table><h2>Configuration</h2><pre>{config}</pre></body></html>\n"
    )
