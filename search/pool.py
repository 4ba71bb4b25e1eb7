"""Where evaluations run: a local pool of worker processes, or a Ray cluster.

Both run the same isolated worker (`evaluate.run_job`, one process per candidate with a timeout) and
yield results as they finish, so the search can commit each one to the database at once. Neither
decides anything about the search: the same jobs give the same results on either.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Protocol

from effc.compiler.errors import EffcError, first_line
from effc.search.evaluate import Fitness, Job, problem_file, run_job, stop_workers


class Pool(Protocol):
    def evaluate(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Fitness]]:
        """(index into jobs, fitness) for every job, in the order they finish."""
        ...

    def close(self) -> None: ...


class LocalPool:
    """`workers` evaluations at a time on this machine, each in its own worker process."""

    def __init__(self, problem_bytes: bytes, workers: int, timeout_s: float) -> None:
        if workers < 1:
            raise EffcError(f"--workers must be at least 1, got {workers}")
        self.problem_path = problem_file(problem_bytes)
        self.timeout_s = timeout_s
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="effc-eval")

    def evaluate(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Fitness]]:
        futures = {
            self.executor.submit(run_job, self.problem_path, job, self.timeout_s): i for i, job in enumerate(jobs)
        }
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        stop_workers()  # an interrupted search does not wait for evaluations nobody will read
        self.executor.shutdown(wait=True)


def _ray_job(problem_bytes: bytes, job: Job, timeout_s: float) -> Fitness:
    """Runs on a Ray worker: materialize the problem on that node once, then the usual isolated worker."""
    return run_job(problem_file(problem_bytes), job, timeout_s)


class RayPool:
    """Evaluations as Ray tasks (one CPU each) on the cluster at `address` ("local" starts one here)."""

    def __init__(self, problem_bytes: bytes, address: str, timeout_s: float) -> None:
        try:
            import ray
        except ImportError:
            raise EffcError("--ray-address needs Ray: pip install 'effc[search]'") from None
        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:
            try:
                ray.init(
                    address=None if address == "local" else address,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise EffcError(f"cannot connect to the Ray cluster at '{address}': {first_line(err)}") from None
        self.problem = ray.put(problem_bytes)
        self.remote: Any = ray.remote(num_cpus=1)(_ray_job)
        self.timeout_s = timeout_s

    def evaluate(self, jobs: Sequence[Job]) -> Iterator[tuple[int, Fitness]]:
        refs = {self.remote.remote(self.problem, job, self.timeout_s): i for i, job in enumerate(jobs)}
        pending = list(refs)
        try:
            while pending:
                done, pending = self.ray.wait(pending, num_returns=1)
                yield refs[done[0]], self.ray.get(done[0])
        finally:
            for ref in pending:
                self.ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()


def make_pool(problem_bytes: bytes, *, workers: int, timeout_s: float, ray_address: str | None = None) -> Pool:
    if ray_address:
        return RayPool(problem_bytes, ray_address, timeout_s)
    return LocalPool(problem_bytes, workers, timeout_s)
