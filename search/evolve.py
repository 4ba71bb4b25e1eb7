"""The search loop: NSGA-II (DEAP) over genomes, objectives (runtime, error), both minimized.

Runtime is the candidate's time relative to the original, both timed alternately in one worker
(see `evaluate.time_against`), so that machine drift does not decide selection.

Generation 0 is the original plus `population - 1` mutants of it. Each later generation picks
parents by DEAP's crowded tournament (`selTournamentDCD`), applies crossover and mutation, evaluates
the offspring, and keeps `selNSGA2(elites + offspring)`, GEVO's scheme (`elites = population` is
plain NSGA-II's mu + lambda). An offspring that is invalid, or whose error exceeds the baseline's by
more than the tolerance, is replaced by its parent, as in GEVO.

Determinism: every random draw comes from an RNG seeded by (seed, generation, slot), and DEAP's
global `random` is seeded the same way around its selection calls. A generation therefore depends
only on the seed and the fitness of the previous population, so a resumed search, which restarts
from the last completed generation with every finished evaluation read from the database, continues
exactly the trajectory it was on.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

from deap import base, tools

from effc.compiler.errors import EffcError
from effc.search.evaluate import Fitness, Job
from effc.search.genome import COMPILE_GENES, Genome
from effc.search.mutate import OPERATORS, Mutator, check_operators, crossover
from effc.search.pool import Pool
from effc.search.store import Store


class Objectives(base.Fitness):
    """(runtime relative to the original, error), both minimized."""

    weights = (-1.0, -1.0)


@dataclass
class Individual:
    genome: Genome
    fitness: Objectives = field(default_factory=Objectives)


@dataclass(frozen=True)
class SearchConfig:
    """Everything that decides a search's trajectory (stored in the database, reused by --resume)."""

    workload: str
    target: str = "llvm-cpu"
    population: int = 16
    generations: int = 8
    mutation_rate: float = 0.5
    crossover_rate: float = 0.8
    tolerance: float = 0.02
    elites: int = 0  # 0: the whole population (NSGA-II's mu + lambda)
    seed: int = 0
    operators: tuple[str, ...] = OPERATORS
    initial_edits: int = 1
    repetitions: int = 5
    timeout_s: float = 120.0
    device: str = "local-task"
    data_seed: int = 0  # the workload's training and split seed (the problem itself is stored)

    def check(self) -> SearchConfig:
        if self.target not in COMPILE_GENES:
            raise EffcError(f"unknown target '{self.target}': choose one of {', '.join(COMPILE_GENES)}")
        if self.population < 4 or self.population % 4:
            raise EffcError(
                f"--population must be a positive multiple of 4 (NSGA-II's tournament), got {self.population}"
            )
        if self.generations < 0 or self.initial_edits < 1 or self.repetitions < 1:
            raise EffcError("--generations must be >= 0, --initial-edits and --repetitions >= 1")
        for name in ("mutation_rate", "crossover_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise EffcError(f"--{name.replace('_', '-')} must be between 0 and 1, got {getattr(self, name)}")
        if not 0 <= self.elites <= self.population:
            raise EffcError(f"--elites must be between 0 and the population ({self.population}), got {self.elites}")
        check_operators(self.operators)
        if self.tolerance < 0 or self.timeout_s <= 0:
            raise EffcError("--tolerance must be >= 0 and --timeout > 0")
        return self

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "operators": list(self.operators)}

    @staticmethod
    def from_json(data: dict[str, Any]) -> SearchConfig:
        known = {f.name for f in fields(SearchConfig)}
        values = {k: v for k, v in data.items() if k in known}
        values["operators"] = tuple(values.get("operators", OPERATORS))
        return SearchConfig(**values)


class Progress(Protocol):
    """What the search reports while it runs (the CLI draws a progress bar from it)."""

    def generation(self, generation: int, total: int, jobs: int) -> None: ...

    def evaluated(self, fitness: Fitness) -> None: ...

    def generation_done(self, stats: dict[str, Any]) -> None: ...


@contextmanager
def _seeded_global_random(seed: str) -> Iterator[None]:
    """DEAP's selection draws from the global `random`; seed it for the call, then restore it."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


class Search:
    """One search over a stored problem: evaluates through `pool`, records everything in `store`."""

    def __init__(self, store: Store, pool: Pool, config: SearchConfig, progress: Progress | None = None) -> None:
        self.store = store
        self.pool = pool
        self.config = config.check()
        self.progress = progress
        self.problem = store.problem()
        self.mutator = Mutator(self.problem.original, config.target, config.operators)
        self.cache = store.fitnesses()
        self.baseline_key = Genome().key

    def rng(self, generation: int, slot: int | str) -> random.Random:
        return random.Random(f"{self.config.seed}:{generation}:{slot}")

    def eligible(self, fitness: Fitness | None) -> bool:
        """Valid, and no more than `tolerance` worse than the original on the validation split."""
        baseline = self.cache.get(self.baseline_key)
        if fitness is None or not fitness.ok or baseline is None or not baseline.ok:
            return False
        assert fitness.error is not None and baseline.error is not None
        return fitness.error <= baseline.error + self.config.tolerance

    def individual(self, genome: Genome) -> Individual:
        fitness = self.cache[genome.key]
        individual = Individual(genome)
        individual.fitness.values = (fitness.relative_runtime, fitness.error)
        return individual

    def run(self) -> list[Individual]:
        """Run (or continue) the search to `config.generations`; returns the final population."""
        done = self.store.generations()
        if done:
            last, keys, _ = done[-1]
            population = [self.individual(self.store.genome(k)) for k in keys]
        else:
            last, population = 0, self._initial()
        for generation in range(last + 1, self.config.generations + 1):
            population = self._step(population, generation)
        return population

    def initial_genomes(self) -> list[Genome]:
        """Generation 0: the original, then `population - 1` mutants of it (`initial_edits` mutations each)."""
        genomes = [Genome()]
        for slot in range(1, self.config.population):
            rng, genome = self.rng(0, slot), Genome()
            for _ in range(self.config.initial_edits):
                genome = self.mutator.mutate(genome, rng) or genome
            genomes.append(genome)
        return genomes

    def _initial(self) -> list[Individual]:
        start = time.perf_counter()
        genomes = self.initial_genomes()
        evaluated = self._evaluate(genomes, 0)
        baseline = self.cache[self.baseline_key]
        if not baseline.ok:
            raise EffcError(f"the original model itself fails ({baseline.status}): {baseline.detail}")
        offspring = [g if self.eligible(self.cache[g.key]) else Genome() for g in genomes]
        population = self._select([], offspring)
        self._record(0, genomes, evaluated, population, start)
        return population

    def _step(self, population: list[Individual], generation: int) -> list[Individual]:
        start = time.perf_counter()
        with _seeded_global_random(f"{self.config.seed}:{generation}:select"):
            tools.selNSGA2(population, len(population))  # assigns the crowding distances the tournament reads
            parents = tools.selTournamentDCD(population, len(population))
        children: list[tuple[Genome, Genome]] = []  # (child, parent it falls back to)
        for slot in range(0, len(parents), 2):
            rng = self.rng(generation, slot)
            a, b = parents[slot].genome, parents[slot + 1].genome
            child_a, child_b = a, b
            if rng.random() < self.config.crossover_rate and (a.edits or b.edits or a.config != b.config):
                cross_a, cross_b = crossover(a, b, rng, self.config.target)
                child_a = cross_a if self.mutator.valid(cross_a) else a
                child_b = cross_b if self.mutator.valid(cross_b) else b
            if rng.random() < self.config.mutation_rate:
                child_a = self.mutator.mutate(child_a, rng) or child_a
            if rng.random() < self.config.mutation_rate:
                child_b = self.mutator.mutate(child_b, rng) or child_b
            children += [(child_a, a), (child_b, b)]
        evaluated = self._evaluate([child for child, _ in children], generation)
        offspring = [child if self.eligible(self.cache[child.key]) else parent for child, parent in children]
        elites = self.config.elites or self.config.population
        survivors = [i.genome for i in tools.selNSGA2(population, elites)]
        population = self._select(survivors, offspring)
        self._record(generation, [child for child, _ in children], evaluated, population, start)
        return population

    def _select(self, survivors: list[Genome], offspring: list[Genome]) -> list[Individual]:
        """selNSGA2 over the distinct genomes, padded to the population size by repeating the chosen."""
        unique = list({g.key: g for g in [*survivors, *offspring]}.values())
        chosen = tools.selNSGA2([self.individual(g) for g in unique], min(len(unique), self.config.population))
        return [self.individual(chosen[i % len(chosen)].genome) for i in range(self.config.population)]

    def _evaluate(self, genomes: list[Genome], generation: int) -> list[Genome]:
        """Evaluate the genomes not in the cache (each once), committing each result; returns those."""
        todo = list({g.key: g for g in genomes if g.key not in self.cache}.values())
        if self.progress:
            self.progress.generation(generation, self.config.generations, len(todo))
        jobs = [Job(g.to_json(), repetitions=self.config.repetitions, device=self.config.device) for g in todo]
        for index, fitness in self.pool.evaluate(jobs):
            self.store.record(todo[index], fitness, generation)
            self.cache[todo[index].key] = fitness
            if self.progress:
                self.progress.evaluated(fitness)
        return todo

    def _record(
        self,
        generation: int,
        candidates: list[Genome],
        evaluated: list[Genome],
        population: list[Individual],
        start: float,
    ) -> None:
        front = self.front()
        stats = {
            "candidates": len(candidates),
            "cache_hits": len(candidates) - len(evaluated),
            "evaluated": len(evaluated),
            "invalid": sum(1 for g in evaluated if not self.cache[g.key].ok),
            "rejected_before_compile": self.mutator.rejected,
            "best_relative_runtime": min(i.fitness.values[0] for i in front),
            "front_size": len(front),
            "seconds": time.perf_counter() - start,
        }
        self.mutator.rejected = 0
        self.store.record_generation(generation, [i.genome.key for i in population], stats)
        if self.progress:
            self.progress.generation_done({"generation": generation, **stats})

    def front(self) -> list[Individual]:
        """The Pareto front of every eligible candidate evaluated so far, fastest first."""
        genomes = [self.store.genome(k) for k, f in self.cache.items() if self.eligible(f)]
        individuals = [self.individual(g) for g in genomes]
        first = tools.sortNondominated(individuals, len(individuals), first_front_only=True)[0]
        unique = {i.fitness.values: i for i in sorted(first, key=lambda i: i.genome.key)}
        return sorted(unique.values(), key=lambda i: i.fitness.values)
