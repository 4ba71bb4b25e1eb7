"""User-facing errors.

Every failure a user can cause (bad file, bad flag, unsupported op) is raised as `EffcError` with a
one-line message that names the thing and says what to do; the CLI prints it without a traceback.
"""

from __future__ import annotations


class EffcError(Exception):
    """An error caused by the user's input, reported as one line (plus optional detail lines)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


def first_line(err: BaseException) -> str:
    """The first line of a third-party exception's message, for embedding in a one-line error."""
    text = str(err).strip()
    return text.splitlines()[0].rstrip(".") if text else type(err).__name__
