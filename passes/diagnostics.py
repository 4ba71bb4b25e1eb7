"""MLIR diagnostics as plain data: collected from a context, printed like mlir-opt, checked against
`// expected-error @below {{...}}` annotations (`effc opt --verify-diagnostics`).

The bindings hand out diagnostics two ways: errors raised during parsing or a pass run arrive in the
`MLIRError`, everything else (warnings, remarks, errors emitted outside a capture) goes to handlers
attached to the context. `capture` covers the second, `from_error` the first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator, Sequence

from torch_mlir import ir

# The first `"file":line:col` inside a location, also inside name/callsite/fused locations.
_FILE_LINE_COL = re.compile(r'"((?:[^"\\]|\\.)*)":(\d+):(\d+)')
# MLIR's own expectation syntax (mlir/lib/IR/Diagnostics.cpp, SourceMgrDiagnosticVerifierHandler).
_EXPECTED = re.compile(
    r"expected-(error|warning|remark|note)(-re)?\s*(?:@(above|below|unknown|[+-]\d+))?\s*\{\{(.*)\}\}\s*$"
)
# Printed on every op error unless the context disables it; mlir-opt disables it when verifying.
_OP_NOTE = "see current operation:"


@dataclasses.dataclass(frozen=True)
class Diagnostic:
    """One diagnostic; `file` is None for unknown locations, `"-"` for IR parsed from a string."""

    severity: str
    message: str
    file: str | None = None
    line: int = 0
    col: int = 0
    notes: tuple[Diagnostic, ...] = ()

    @classmethod
    def from_mlir(cls, diag: ir.Diagnostic) -> Diagnostic:
        match = _FILE_LINE_COL.search(str(diag.location))
        file, line, col = (match[1], int(match[2]), int(match[3])) if match else (None, 0, 0)
        notes = tuple(cls.from_mlir(note) for note in diag.notes)
        return cls(diag.severity.name.lower(), str(diag.message), file, line, col, notes)

    def render(self, source_name: str, source_text: str | None = None) -> str:
        """mlir-opt's format: `file:line:col: severity: message`, the source line and a caret.

        Locations in `"-"` (IR parsed from a string) are shown as `source_name`, whose text, when
        given, supplies the source line.
        """
        if self.file is None:
            head = f"{source_name}: {self.severity}: {self.message}"
        else:
            file = source_name if self.file == "-" else self.file
            head = f"{file}:{self.line}:{self.col}: {self.severity}: {self.message}"
            lines = source_text.splitlines() if source_text is not None and self.file == "-" else []
            if 0 < self.line <= len(lines):
                head += f"\n{lines[self.line - 1]}\n{' ' * max(self.col - 1, 0)}^"
        return "\n".join([head, *(note.render(source_name, source_text) for note in self.notes)])


def from_error(err: ir.MLIRError) -> list[Diagnostic]:
    """The error diagnostics carried by an `MLIRError` (a failed parse or pass run)."""
    return [Diagnostic.from_mlir(diag) for diag in err.error_diagnostics]


@contextlib.contextmanager
def capture(context: ir.Context) -> Iterator[list[Diagnostic]]:
    """Collect the diagnostics that reach `context`'s handlers (instead of native stderr)."""
    found: list[Diagnostic] = []

    def handler(diag: ir.Diagnostic) -> bool:
        found.append(Diagnostic.from_mlir(diag))
        return True

    attached = context.attach_diagnostic_handler(handler)
    try:
        yield found
    finally:
        attached.detach()


@dataclasses.dataclass
class Expectation:
    """One `expected-<severity> [@designator] {{message}}` annotation."""

    severity: str
    pattern: re.Pattern[str]
    text: str
    line: int | None  # the line it expects a diagnostic on; None for @unknown
    directive_line: int
    directive_col: int
    matched: bool = False

    def matches(self, diag: Diagnostic) -> bool:
        line = None if diag.file is None else diag.line
        same_place = diag.severity == self.severity and line == self.line
        return same_place and self.pattern.search(diag.message) is not None


def parse_expectations(text: str, first_line: int = 1) -> list[Expectation]:
    """The annotations in `text`, whose first line is line `first_line` of the file.

    `@below` binds to the next line without an annotation, `@above` to the previous line, `@+N`/`@-N`
    are relative, no designator means the annotation's own line. `expected-error-re {{a {{[0-9]+}}}}`
    treats the inner `{{...}}` as a regex and the rest literally.
    """
    found: list[Expectation] = []
    below: list[Expectation] = []
    for number, line_text in enumerate(text.splitlines(), start=first_line):
        match = _EXPECTED.search(line_text)
        if match is None:
            for expectation in below:
                expectation.line = number
            below.clear()
            continue
        severity, is_regex, designator, message = match.groups()
        pattern = _regex_pattern(message) if is_regex else re.compile(re.escape(message))
        expectation = Expectation(severity, pattern, message, number, number, match.start() + 1)
        if designator == "unknown":
            expectation.line = None
        elif designator == "above":
            expectation.line = number - 1
        elif designator == "below":
            below.append(expectation)
        elif designator is not None:
            expectation.line = number + int(designator)
        found.append(expectation)
    return found


def _regex_pattern(message: str) -> re.Pattern[str]:
    parts = re.split(r"\{\{(.*?)\}\}", message)
    return re.compile("".join(part if i % 2 else re.escape(part) for i, part in enumerate(parts)))


def verify(expectations: Sequence[Expectation], diagnostics: Sequence[Diagnostic]) -> list[Diagnostic]:
    """Match diagnostics (and their notes) against expectations, as mlir-opt does.

    Returns the problems as error diagnostics: `unexpected <severity>: ...` at the diagnostic's
    location and `expected <severity> "..." was not produced` at the annotation's.
    """
    problems: list[Diagnostic] = []
    for diag in _flatten(diagnostics):
        hit = next((e for e in expectations if e.matches(diag)), None)
        if hit is None:
            message = f"unexpected {diag.severity}: {diag.message}"
            problems.append(dataclasses.replace(diag, severity="error", message=message))
        else:
            hit.matched = True
    for expectation in expectations:
        if not expectation.matched:
            problems.append(
                Diagnostic(
                    "error",
                    f'expected {expectation.severity} "{expectation.text}" was not produced',
                    "-",
                    expectation.directive_line,
                    expectation.directive_col,
                )
            )
    return problems


def _flatten(diagnostics: Sequence[Diagnostic]) -> Iterator[Diagnostic]:
    for diag in diagnostics:
        yield dataclasses.replace(diag, notes=())
        yield from _flatten([n for n in diag.notes if not n.message.startswith(_OP_NOTE)])
