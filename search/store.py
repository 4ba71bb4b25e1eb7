"""The search database: every evaluated genome and its fitness, in SQLite.

Evaluations are keyed by the genome key (a hash of the edit list and compile genes) and committed
one by one as they finish, in WAL mode, so killing the search at any moment (SIGKILL included)
loses no finished evaluation. The database also holds the problem (annotated IR and data splits) and
the search configuration, so `--resume` and `--apply` need nothing else, and one row per completed
generation (its population), which is where a resumed search picks up.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import astuple
from pathlib import Path
from typing import Any

from effc.compiler.errors import EffcError, first_line
from effc.search.evaluate import Fitness
from effc.search.genome import Genome
from effc.search.problem import Problem

FORMAT = "effc-search/1"
FITNESS = "status, runtime_s, relative_runtime, error, detail, seconds"  # columns, in Fitness field order
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    key TEXT PRIMARY KEY, genome TEXT NOT NULL, status TEXT NOT NULL, runtime_s REAL, relative_runtime REAL,
    error REAL, detail TEXT NOT NULL, seconds REAL NOT NULL, generation INTEGER NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS generations (generation INTEGER PRIMARY KEY, population TEXT NOT NULL, stats TEXT NOT NULL);
"""


class Store:
    """One search's database file."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self.db = connection

    @staticmethod
    def create(path: str | Path, config: dict[str, Any], problem: Problem) -> Store:
        target = Path(path)
        if target.exists():
            raise EffcError(f"search database '{target}' already exists: continue it with --resume, or pass a new --db")
        target.parent.mkdir(parents=True, exist_ok=True)
        store = Store(target, _connect(target))
        with store.db:
            store.db.executescript(SCHEMA)
            store.db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("format", FORMAT),
                    ("config", json.dumps(config)),
                    ("problem", problem.to_bytes()),
                    ("digest", problem.digest),
                ],
            )
        return store

    @staticmethod
    def open(path: str | Path) -> Store:
        target = Path(path)
        if not target.is_file():
            raise EffcError(
                f"search database '{target}' not found; start a search with `effc search WORKLOAD --db {target}`"
            )
        store = Store(target, _connect(target))
        try:
            rows = dict(store.db.execute("SELECT name, value FROM meta").fetchall())
            store.db.execute(f"SELECT key, genome, {FITNESS}, generation FROM evaluations LIMIT 1")
            store.db.execute("SELECT generation, population, stats FROM generations LIMIT 1")
        except sqlite3.DatabaseError as err:
            raise EffcError(f"'{target}' is not an effc search database ({first_line(err)})") from None
        if rows.get("format") != FORMAT or not {"config", "problem", "digest"} <= rows.keys():
            raise EffcError(
                f"'{target}' is not an effc search database (format {rows.get('format')!r}, expected {FORMAT!r})"
            )
        return store

    def _meta(self, name: str) -> Any:
        return self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()[0]

    def config(self) -> dict[str, Any]:
        try:
            return json.loads(self._meta("config"))
        except (json.JSONDecodeError, TypeError) as err:
            raise EffcError(f"'{self.path}': the stored search configuration is corrupt ({first_line(err)})") from None

    def update_config(self, config: dict[str, Any]) -> None:
        with self.db:
            self.db.execute("UPDATE meta SET value = ? WHERE name = 'config'", (json.dumps(config),))

    def problem(self) -> Problem:
        try:
            return Problem.from_bytes(self._meta("problem"))
        except (ValueError, KeyError, OSError) as err:
            raise EffcError(f"'{self.path}': the stored problem is corrupt ({first_line(err)})") from None

    @property
    def digest(self) -> str:
        return str(self._meta("digest"))

    def record(self, genome: Genome, fitness: Fitness, generation: int) -> None:
        """Store one finished evaluation and commit it at once (a key is never evaluated twice)."""
        with self.db:
            self.db.execute(
                f"INSERT INTO evaluations (key, genome, {FITNESS}, generation, created) VALUES ({', '.join('?' * 10)})",
                (genome.key, json.dumps(genome.to_json()), *astuple(fitness), generation, time.time()),
            )

    def fitnesses(self) -> dict[str, Fitness]:
        rows = self.db.execute(f"SELECT key, {FITNESS} FROM evaluations")
        return {key: Fitness(*values) for key, *values in rows}

    def evaluations(self) -> list[tuple[Genome, Fitness, int]]:
        """Every evaluation as (genome, fitness, generation first evaluated), in the order they finished."""
        rows = self.db.execute(f"SELECT genome, generation, {FITNESS} FROM evaluations ORDER BY rowid")
        target = self.config()["target"]
        return [
            (Genome.from_json(json.loads(genome), target), Fitness(*values), generation)
            for genome, generation, *values in rows
        ]

    def genome(self, key: str) -> Genome:
        row = self.db.execute("SELECT genome FROM evaluations WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise EffcError(f"'{self.path}' holds no evaluation of genome {key}")
        return Genome.from_json(json.loads(row[0]), self.config()["target"])

    def record_generation(self, generation: int, population: list[str], stats: dict[str, Any]) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO generations VALUES (?, ?, ?)",
                (generation, json.dumps(population), json.dumps(stats)),
            )

    def generations(self) -> list[tuple[int, list[str], dict[str, Any]]]:
        rows = self.db.execute("SELECT generation, population, stats FROM generations ORDER BY generation")
        return [(g, json.loads(population), json.loads(stats)) for g, population, stats in rows]

    def close(self) -> None:
        self.db.close()


def _connect(path: Path) -> sqlite3.Connection:
    try:
        connection = sqlite3.connect(path, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.DatabaseError as err:
        raise EffcError(f"'{path}' is not an effc search database ({first_line(err)})") from None
    return connection
