"""Stage-by-stage progress on stderr: a live spinner while a stage runs, a timed check mark after.

Compiling a real model takes tens of seconds spread over loading, export, import, passes and IREE;
showing each stage tells the user where the time goes and that nothing hangs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

# Columns for tables written to a file or a pipe: rich's default there is 80, which folds every source path and
# dispatch name of a report over several lines.
REDIRECTED_WIDTH = 160


def report_console(*, soft_wrap: bool = False) -> Console:
    """The console a command prints its results on: the terminal's width, or REDIRECTED_WIDTH when redirected."""
    return Console(highlight=False, soft_wrap=soft_wrap, width=None if Console().is_terminal else REDIRECTED_WIDTH)


class Stages:
    """Reports named stages; silent when `enabled` is False (library use, tests)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.console = Console(stderr=True, highlight=False)
        self.timings: dict[str, float] = {}
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        """Something the user should know that is not an error (kept in `notes` for JSON summaries)."""
        self.notes.append(message)
        if self.enabled:
            self.console.print(f"[yellow]note:[/yellow] {message}")

    @contextmanager
    def stage(self, label: str, spinner: bool = True) -> Iterator[None]:
        """Time `label`; `spinner=False` when the stage shows a progress bar of its own (one live display at once)."""
        start = time.perf_counter()
        if self.enabled and spinner and self.console.is_terminal:
            with self.console.status(f"{label}…"):
                yield
        else:
            yield
        elapsed = time.perf_counter() - start
        self.timings[label] = elapsed
        if self.enabled:
            self.console.print(f"[green]✓[/green] {label} [dim]({elapsed:.1f} s)[/dim]")
