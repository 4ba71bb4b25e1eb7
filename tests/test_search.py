"""GEVO-ML search: mutation operators, replay, crossover, isolation, persistence, reports and errors."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from effc.search.api import SearchResult, run_search
from effc.search.evaluate import Fitness, Job
from effc.search.evolve import Search, SearchConfig
from effc.search.genome import Edit, Genome, ReplayError, annotate, candidate_text, replay
from effc.search.mutate import DRAW, Mutator, crossover
from effc.search.problem import Problem
from effc.search.store import Store
from effc.tests import model_zoo

WORKLOAD = "digits-mlp-small"


@pytest.fixture(scope="module")
def problem() -> Problem:
    from effc.search.workloads import load_workload

    return load_workload(WORKLOAD).problem()


@pytest.fixture(scope="module")
def conv_ir() -> str:
    from effc.compiler.api import compile_model

    model, inputs = model_zoo.conv_net()
    return annotate(compile_model(model, inputs, emit="torch").mlir)


@pytest.mark.parametrize("operator", sorted(DRAW))
def test_every_mutation_operator_yields_ir_that_verifies(operator: str, problem: Problem, conv_ir: str) -> None:
    """Property: over many seeds, on an MLP and a CNN, each operator's mutants replay and verify."""
    for original in (problem.original, conv_ir):
        mutator = Mutator(original, operators=(operator,))
        made = 0
        for seed in range(40):
            rng = random.Random(seed)
            genome = Genome()
            for _ in range(3):  # stacked edits: later draws see earlier edits
                child = mutator.mutate(genome, rng)
                if child is None:
                    break
                assert child.edits[-1].kind == operator
                assert child.edits[:-1] == genome.edits
                genome = child
                made += 1
            replay(original, genome)  # raises ReplayError when the result does not verify
        assert made >= 60, f"{operator} produced only {made} mutants in 120 tries"


def test_edits_that_break_types_or_dominance_are_refused(problem: Problem) -> None:
    program = replay(problem.original, Genome())
    order = program.order()
    first_mm = next(i for i, op in enumerate(order) if op.name == "torch.aten.mm")
    mm = order[first_mm].location.name_str
    with pytest.raises(ReplayError, match="does not match"):
        replay(problem.original, Genome((Edit("operand", mm, values=("A0",), slots=(f"{mm}[1]",)),)))
    # A later value of the right type cannot feed mm: it does not dominate it.
    later = next(
        op for op in order[first_mm + 1 :] if op.results and op.results[0].type == order[first_mm].operands[0].type
    )
    with pytest.raises(ReplayError, match="does not dominate"):
        replay(
            problem.original,
            Genome((Edit("operand", mm, values=(f"{later.location.name_str}#0",), slots=(f"{mm}[0]",)),)),
        )
    with pytest.raises(ReplayError, match="not in the candidate"):
        replay(problem.original, Genome((Edit("delete", "U9999", values=(None,)),)))


def test_replay_is_deterministic(problem: Problem) -> None:
    mutator = Mutator(problem.original)
    genome = Genome()
    rng = random.Random(7)
    while len(genome.edits) < 6:
        genome = mutator.mutate(genome, rng) or genome
    first = candidate_text(replay(problem.original, genome))
    assert candidate_text(replay(problem.original, genome)) == first
    again = Genome.from_json(json.loads(json.dumps(genome.to_json())))
    assert again == genome and again.key == genome.key
    assert candidate_text(replay(problem.original, again)) == first
    # The same draws from the same seed give the same genome.
    rng_a, rng_b = random.Random(11), random.Random(11)
    assert mutator.mutate(genome, rng_a) == Mutator(problem.original).mutate(genome, rng_b)


def test_crossover_keeps_shared_edits(problem: Problem) -> None:
    mutator = Mutator(problem.original, operators=("delete", "operand", "swap", "copy"))
    rng = random.Random(3)
    shared = Genome()
    while len(shared.edits) < 2:
        shared = mutator.mutate(shared, rng) or shared
    a, b = shared, shared
    while len(a.edits) < 5:
        a = mutator.mutate(a, rng) or a
    while len(b.edits) < 4:
        b = mutator.mutate(b, rng) or b
    only = [e for e in a.edits if e not in b.edits] + [e for e in b.edits if e not in a.edits]
    assert only
    for seed in range(30):
        first, second = crossover(a, b, random.Random(seed), "llvm-cpu")
        for child in (first, second):
            assert child.edits[: len(shared.edits)] == shared.edits
        rest = [e for e in first.edits + second.edits if e not in shared.edits]
        assert sorted(rest, key=repr) == sorted(only, key=repr)  # every other edit goes to exactly one child
        for child in (first, second):  # each parent's edits keep their order
            for parent in (a, b):
                mine = [e for e in child.edits if e in parent.edits]
                assert mine == [e for e in parent.edits if e in mine]


class _CacheOnlyPool:
    """A pool that must never be asked to evaluate: every result has to come from the database."""

    def evaluate(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Fitness]]:
        assert not jobs, f"{len(jobs)} evaluations were not in the cache"
        yield from ()

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def planted(problem: Problem, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A small search in which one initial candidate segfaults its worker and another hangs."""
    directory = tmp_path_factory.mktemp("search")
    config = SearchConfig(WORKLOAD, population=4, generations=1, seed=5, timeout_s=40.0, repetitions=2)
    store = Store.create(directory / "search.db", config.to_json(), problem)
    genomes = Search(store, _CacheOnlyPool(), config).initial_genomes()
    crash, hang = genomes[1], genomes[2]
    assert len({g.key for g in genomes}) == 4
    os.environ["EFFC_SEARCH_FAULT"] = f"crash:{crash.key},hang:{hang.key}"
    try:
        result = run_search(store, directory, workers=2, final_rounds=1)
    finally:
        del os.environ["EFFC_SEARCH_FAULT"]
    return {"dir": directory, "store": store, "result": result, "crash": crash, "hang": hang}


def test_planted_crash_and_hang_are_invalid_and_the_search_goes_on(planted: dict[str, object]) -> None:
    store = planted["store"]
    assert isinstance(store, Store)
    fitness = store.fitnesses()
    crash, hang = planted["crash"], planted["hang"]
    assert isinstance(crash, Genome) and isinstance(hang, Genome)
    assert fitness[crash.key].status == "crash" and "SIGSEGV" in fitness[crash.key].detail
    assert fitness[hang.key].status == "timeout"
    generations = store.generations()
    assert [g for g, _, _ in generations] == [0, 1]  # the search went on to the end
    assert generations[0][2]["invalid"] == 2
    for _, population, _ in generations:
        assert crash.key not in population and hang.key not in population
    assert sum(f.ok for f in fitness.values()) >= 2


def test_report_has_front_table_plots_diffs_and_modules(planted: dict[str, object]) -> None:
    directory, result = planted["dir"], planted["result"]
    assert isinstance(directory, Path) and isinstance(result, SearchResult)
    assert result.front[0].name == "original" and result.front[0].speedup == pytest.approx(1.0)
    for row in result.front:
        assert row.test_error is not None and row.test_runtime_ms is not None
        member = directory / "front" / row.name
        assert (member / "model.vmfb").stat().st_size > 0
        assert json.loads((member / "genome.json").read_text())["key"] == row.key
        diff = (member / "edits.diff").read_text()
        assert row.name == "original" or diff.startswith("// ")
    assert (directory / "front.md").read_text().startswith("| member |")
    assert (directory / "progress.png").read_bytes()[:4] == b"\x89PNG"
    page = (directory / "progress.html").read_text()
    assert "<svg" in page and "Pareto front" in page


def test_apply_rebuilds_a_front_member(planted: dict[str, object], effc_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    directory, result = planted["dir"], planted["result"]
    assert isinstance(directory, Path) and isinstance(result, SearchResult)
    row = result.front[-1]
    genome_file = directory / "front" / row.name / "genome.json"
    out = effc_cli("search", "--apply", str(genome_file), "--db", str(directory / "search.db"), "-o", str(tmp_path))
    assert out.code == 0, out.err
    assert (tmp_path / f"{row.key}.vmfb").stat().st_size > 0
    assert (tmp_path / f"{row.key}.diff").read_text() == (directory / "front" / row.name / "edits.diff").read_text()


def test_malformed_genome_file_or_database_is_one_line_error(
    planted: dict[str, object], effc_cli, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    directory = planted["dir"]
    assert isinstance(directory, Path)
    db = str(directory / "search.db")
    cases: list[tuple[list[str], str]] = []
    broken = tmp_path / "broken.json"
    broken.write_text('{"edits": [')
    cases.append((["--apply", str(broken), "--db", db], f"effc: error: '{broken}' is not a genome file: "))
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"edits": [{"kind": "teleport", "target": "U1"}]}))
    cases.append((["--apply", str(wrong), "--db", db], "effc: error: not an edit: "))
    gene = tmp_path / "gene.json"
    gene.write_text(json.dumps({"edits": [], "config": {"demote": "int3"}}))
    cases.append((["--apply", str(gene), "--db", db], "effc: error: unknown compile gene demote=int3 for llvm-cpu"))
    dangling = tmp_path / "dangling.json"
    dangling.write_text(json.dumps({"edits": [{"kind": "delete", "target": "U4242", "values": [None]}]}))
    cases.append((["--apply", str(dangling), "--db", db], "effc: error: op U4242 is not in the candidate"))
    text_db = tmp_path / "notes.db"
    text_db.write_text("this is not sqlite\n" * 100)
    cases.append((["--resume", "--db", str(text_db)], f"effc: error: '{text_db}' is not an effc search database"))
    other_db = tmp_path / "other.db"
    sqlite3.connect(other_db).execute("CREATE TABLE t (x)").connection.commit()
    cases.append((["--resume", "--db", str(other_db)], f"effc: error: '{other_db}' is not an effc search database"))
    cases.append((["--resume", "--db", str(tmp_path / "none.db")], "effc: error: search database"))
    for args, prefix in cases:
        out = effc_cli("search", *args, "-o", str(tmp_path / "out"))
        assert out.code == 1, (args, out.err)
        assert out.err.startswith(prefix), (args, out.err)
        assert len(out.err.strip().splitlines()) == 1, out.err


def _rows(db: Path) -> dict[str, tuple[object, ...]]:
    with sqlite3.connect(db) as connection:
        return {row[0]: row for row in connection.execute("SELECT * FROM evaluations")}


def test_kill_and_resume_loses_nothing_and_continues_the_same_trajectory(problem: Problem, tmp_path: Path) -> None:
    out = tmp_path / "run"
    db = out / "search.db"
    command = [
        sys.executable,
        "-m",
        "effc.compiler.cli",
        "search",
        WORKLOAD,
        "-o",
        str(out),
        "--population",
        "4",
        "--generations",
        "3",
        "--seed",
        "9",
        "--workers",
        "2",
        "--repetitions",
        "2",
        "--final-rounds",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    before: dict[str, tuple[object, ...]] = {}
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        if db.exists():
            try:
                before = _rows(db)
            except sqlite3.OperationalError:
                continue
            if len(before) >= 5:  # generation 0 done, generation 1 under way, two more to go
                break
    assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = _rows(db)
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM generations").fetchone()[0] < 4  # killed mid-search
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "effc.compiler.cli",
            "search",
            "--resume",
            "-o",
            str(out),
            "--workers",
            "2",
            "--final-rounds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert resumed.returncode == 0, resumed.stderr
    after = _rows(db)
    for key, row in before.items():
        assert after[key] == row  # kept as it was, never re-evaluated
    store = Store.open(db)
    trajectory = store.generations()
    assert [g for g, _, _ in trajectory] == [0, 1, 2, 3]

    # Replaying the whole search from the seed with every fitness taken from the database must need
    # no evaluation and pass through exactly the same populations: the killed-and-resumed run is on
    # the trajectory a run that was never killed would take.
    copy = tmp_path / "replay.db"
    config = SearchConfig.from_json(store.config())
    Store.create(copy, config.to_json(), store.problem()).close()
    with sqlite3.connect(copy) as connection:
        connection.execute("ATTACH DATABASE ? AS done", (str(db),))
        connection.execute("INSERT INTO evaluations SELECT * FROM done.evaluations")
    replayed = Store.open(copy)
    Search(replayed, _CacheOnlyPool(), config).run()
    assert [(g, p) for g, p, _ in replayed.generations()] == [(g, p) for g, p, _ in trajectory]
    shutil.rmtree(out / "front", ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local Ray instance for the module (skipped only when Ray is not installed)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_and_local_pool_give_equal_results(problem: Problem, ray_cluster: None, tmp_path: Path) -> None:
    from effc.search.pool import LocalPool, RayPool

    config = SearchConfig(WORKLOAD, population=4, generations=0, seed=2, repetitions=1)
    runs = {}
    for name, pool in (
        ("local", LocalPool(problem.to_bytes(), 2, 60.0)),
        ("ray", RayPool(problem.to_bytes(), "local", 60.0)),
    ):
        store = Store.create(tmp_path / f"{name}.db", config.to_json(), problem)
        try:
            Search(store, pool, config).run()
            broken = Genome((Edit("delete", "U4242", values=(None,)),))
            runs[name] = (store.fitnesses(), dict(pool.evaluate([Job(broken.to_json(), repetitions=1)])))
        finally:
            pool.close()
    (local, local_broken), (remote, remote_broken) = runs["local"], runs["ray"]
    assert local.keys() == remote.keys() and len(local) == 4  # the same candidates were evaluated
    for key, fitness in local.items():
        assert (remote[key].status, remote[key].error) == (fitness.status, fitness.error)  # bit-identical error
        assert remote[key].relative_runtime is not None and remote[key].relative_runtime > 0
    assert local_broken[0].status == remote_broken[0].status == "replay"
    assert local_broken[0].detail == remote_broken[0].detail
