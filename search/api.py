"""The Python API behind `effc search`: start or resume a search, run it, rebuild a candidate.

store = new_search(SearchConfig("digits-mlp", population=16), "out/search.db")
result = run_search(store, Path("out"))            # evolve, measure the front, write the report
rebuild_candidate(Path("out/front/01-.../genome.json"), Path("out/search.db"), Path("rebuilt"))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effc.compiler.errors import EffcError
from effc.compiler.fileio import write_atomic
from effc.search.evolve import Progress, Search, SearchConfig
from effc.search.genome import Genome, candidate_text, replay
from effc.search.pool import make_pool
from effc.search.problem import Problem
from effc.search.report import FrontMember, ir_diff, measure_front, write_report
from effc.search.store import Store


@dataclass
class SearchResult:
    problem: Problem
    front: list[FrontMember]  # the original first, then the front, fastest first (test-split numbers)
    generations: list[dict[str, Any]]
    files: dict[str, Path]


def new_search(config: SearchConfig, db: str | Path) -> Store:
    """Build the workload (training it if needed), import it, and create the search database."""
    from effc.search.workloads import load_workload

    config.check()
    problem = load_workload(config.workload, config.data_seed).problem(config.target)
    return Store.create(db, config.to_json(), problem)


def resume_search(db: str | Path, generations: int | None = None) -> tuple[Store, SearchConfig]:
    """Open a stored search; `generations` may extend it (nothing else that shapes the trajectory changes)."""
    store = Store.open(db)
    config = SearchConfig.from_json(store.config())
    if generations is not None and generations != config.generations:
        config = SearchConfig.from_json({**config.to_json(), "generations": generations}).check()
        store.update_config(config.to_json())
    return store, config


def run_search(
    store: Store,
    output: Path,
    *,
    workers: int = 2,
    ray_address: str | None = None,
    final_rounds: int = 5,
    progress: Progress | None = None,
) -> SearchResult:
    """Run (or continue) the search in `store`, then measure the front on the test split and write the report."""
    config = SearchConfig.from_json(store.config())
    problem = store.problem()
    pool = make_pool(problem.to_bytes(), workers=workers, timeout_s=config.timeout_s, ray_address=ray_address)
    try:
        engine = Search(store, pool, config, progress)
        engine.run()
    finally:
        pool.close()
    original = Genome()
    members = [(original, engine.cache[original.key])]
    members += [(i.genome, engine.cache[i.genome.key]) for i in engine.front() if i.genome.key != original.key]
    rows = measure_front(
        problem, members, output / "front", workers=workers, timeout_s=config.timeout_s, rounds=final_rounds
    )
    generations = [{"generation": g, **stats} for g, _, stats in store.generations()]
    files = write_report(output, store, problem, rows, generations)
    return SearchResult(problem, rows, generations, files)


def rebuild_candidate(genome_file: Path, db: Path, output: Path) -> dict[str, Path]:
    """Rebuild the candidate in a genome file: its IR, a readable diff and the compiled .vmfb."""
    from effc.compiler.iree_backend import compile_mlir

    try:
        document = json.loads(genome_file.read_text())
    except FileNotFoundError:
        raise EffcError(f"genome file '{genome_file}' not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EffcError(f"'{genome_file}' is not a genome file: {err}") from None
    store = Store.open(db)
    if isinstance(document, dict) and document.get("problem", store.digest) != store.digest:
        raise EffcError(
            f"'{genome_file}' comes from a search over another model (problem {document['problem']}); "
            "pass that search's --db"
        )
    problem = store.problem()
    genome = Genome.from_json(document, problem.target)
    text = candidate_text(replay(problem.original, genome))
    output.mkdir(parents=True, exist_ok=True)
    vmfb = compile_mlir(text, target=problem.target, extra_flags=genome.flags(problem.target))
    return {
        "mlir": write_atomic(output / f"{genome.key}.mlir", text),
        "diff": write_atomic(output / f"{genome.key}.diff", ir_diff(problem.original, genome)),
        "vmfb": write_atomic(output / f"{genome.key}.vmfb", vmfb),
    }
