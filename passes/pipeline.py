"""MLIR textual pass pipelines that mix upstream MLIR/torch-mlir passes and effc passes.

`parse_pipeline` reads mlir-opt's grammar (`builtin.module(canonicalize,effc-profile{target=h100-sxm},
func.func(cse))`, options `{a=1 b=x,y c='q v' d={n m}}`); `build_pass_manager` turns it into ONE
torch-mlir `PassManager`: maximal runs of upstream elements are added as text (`pm.add("...")`, nested
anchors included), each effc pass as a Python callable at module level.

The bindings cannot register Python passes by name, hence this parser. They also abort the process
when a Python pass is nested under `func.func`, so an effc pass written inside `func.func(...)` is
hoisted: the upstream run around it is split and the effc pass runs once on the whole module at that
point. effc passes walk the functions themselves, so for function-local work the result is the same.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, overload

from torch_mlir import ir
from torch_mlir.passmanager import PassManager

from effc.compiler.errors import EffcError
from effc.compiler.fileio import write_atomic
from effc.compiler.mlir_context import new_context, parse_module
from effc.passes import diagnostics, registry
from effc.passes.base import ModulePass, OptionError, PassFailure, UpstreamPipelinePass

ROOT_ANCHOR = "builtin.module"
# Anchors an effc pass may be written under (it is hoisted to module level, see the module doc).
_HOISTABLE_ANCHORS = frozenset({"func.func"})
_NAME_CHARS = re.compile(r"[A-Za-z0-9_.$\-]+")
# How long a forked pipeline-parse probe may take (it takes milliseconds unless stuck).
_PROBE_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class PassOption:
    """`key=value` inside a pass's braces; `value` is as written (quotes/braces kept), None if bare."""

    key: str
    value: str | None
    offset: int

    def __str__(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"

    def unquoted(self) -> str:
        """The value with one level of surrounding quotes or braces removed (`''` for a bare flag)."""
        value = self.value or ""
        if len(value) >= 2 and (value[0], value[-1]) in (("'", "'"), ('"', '"'), ("{", "}")):
            return value[1:-1]
        return value


@dataclasses.dataclass(frozen=True)
class PassSpec:
    """A pass as written in a pipeline; `text` is the exact source, handed verbatim to MLIR."""

    name: str
    options: tuple[PassOption, ...]
    offset: int
    text: str

    def __str__(self) -> str:
        return f"{self.name}{{{' '.join(map(str, self.options))}}}" if self.options else self.name


@dataclasses.dataclass(frozen=True)
class NestedPipeline:
    """`anchor(element,...)`: the elements run on each `anchor` op nested in the parent."""

    anchor: str
    elements: tuple[PassSpec | NestedPipeline, ...]
    offset: int

    def __str__(self) -> str:
        return f"{self.anchor}({','.join(map(str, self.elements))})"


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """A parsed pipeline; `str()` gives its normalized one-line text, `source` the text as given."""

    root: NestedPipeline
    source: str

    def __str__(self) -> str:
        return str(self.root)

    def error(self, offset: int, message: str) -> EffcError:
        return _positioned_error(self.source, offset, message)


def _positioned_error(source: str, offset: int, message: str) -> EffcError:
    """`pipeline:LINE:COL: message`, with the source line and a caret as detail."""
    line_start = source.rfind("\n", 0, offset) + 1
    line_end = source.find("\n", offset)
    line_text = source[line_start : len(source) if line_end < 0 else line_end]
    line, col = source.count("\n", 0, offset) + 1, offset - line_start + 1
    return EffcError(f"pipeline:{line}:{col}: {message}", detail=f"  {line_text}\n  {' ' * (col - 1)}^")


class _Parser:
    """Recursive descent over mlir-opt's pipeline grammar (mlir/docs/PassManagement.md)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str, offset: int | None = None) -> EffcError:
        return _positioned_error(self.text, self.pos if offset is None else offset, message)

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def name(self, what: str) -> str:
        match = _NAME_CHARS.match(self.text, self.pos)
        if match is None:
            found = f"'{self.peek()}'" if self.peek() else "end of pipeline"
            raise self.fail(f"expected {what}, found {found}")
        self.pos = match.end()
        return match.group()

    def pipeline(self) -> NestedPipeline:
        self.skip_space()
        if not self.peek():
            raise self.fail(f"empty pipeline; expected e.g. '{ROOT_ANCHOR}(canonicalize)'")
        start = self.pos
        anchor = self.name("an anchor op name")
        self.skip_space()
        if self.peek() != "(":
            raise self.fail(
                f"expected the pipeline to be wrapped in its anchor op, e.g. '{ROOT_ANCHOR}({self.text.strip()})'",
                start,
            )
        root = self.nested(anchor, start)
        self.skip_space()
        if self.peek():
            found = self.peek()
            raise self.fail(f"unexpected '{found}' after the pipeline; put every pass inside '{anchor}(...)'")
        if anchor != ROOT_ANCHOR:
            raise self.fail(
                f"the pipeline must be anchored on '{ROOT_ANCHOR}' (effc runs on modules), "
                f"not '{anchor}'; write '{ROOT_ANCHOR}({anchor}(...))'",
                start,
            )
        return root

    def nested(self, anchor: str, start: int) -> NestedPipeline:
        open_at = self.pos
        self.pos += 1  # '('
        elements: list[PassSpec | NestedPipeline] = []
        self.skip_space()
        if self.peek() == ")":
            self.pos += 1
            return NestedPipeline(anchor, (), start)
        while True:
            elements.append(self.element())
            self.skip_space()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() == ")":
                self.pos += 1
                return NestedPipeline(anchor, tuple(elements), start)
            elif not self.peek():
                col = open_at - self.text.rfind("\n", 0, open_at)
                raise self.fail(f"expected ')' to close '{anchor}(' at column {col}")
            else:
                raise self.fail("expected ',' or ')'")

    def element(self) -> PassSpec | NestedPipeline:
        self.skip_space()
        start = self.pos
        name = self.name("a pass name")
        self.skip_space()
        if self.peek() == "(":
            return self.nested(name, start)
        options = self.options(name) if self.peek() == "{" else ()
        return PassSpec(name, options, start, self.text[start : self.pos])

    def options(self, pass_name: str) -> tuple[PassOption, ...]:
        open_at = self.pos
        self.pos += 1  # '{'
        found: list[PassOption] = []
        while True:
            self.skip_space()
            if self.peek() == "}":
                self.pos += 1
                return tuple(found)
            if not self.peek():
                raise self.fail(f"expected '}}' to close the options of '{pass_name}'", open_at)
            key_at = self.pos
            while self.peek() and not self.peek().isspace() and self.peek() not in "=}{":
                self.pos += 1
            key = self.text[key_at : self.pos]
            if not key:
                raise self.fail(f"expected an option name in the options of '{pass_name}'")
            value = None
            if self.peek() == "=":
                self.pos += 1
                value = self.value(key)
            found.append(PassOption(key, value, key_at))

    def value(self, key: str) -> str:
        """One option value: up to whitespace or the closing '}', skipping quoted and braced parts."""
        start = self.pos
        depth = 0
        while self.peek() and (depth or not (self.peek().isspace() or self.peek() == "}")):
            char = self.peek()
            if char in "'\"":
                end = self.text.find(char, self.pos + 1)
                if end < 0:
                    raise self.fail(f"unterminated {char} in the value of option '{key}'")
                self.pos = end
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
            self.pos += 1
        if depth:
            raise self.fail(f"expected '}}' to close the value of option '{key}'", start)
        if self.pos == start:
            raise self.fail(f"expected a value for option '{key}'")
        return self.text[start : self.pos]


def parse_pipeline(text: str) -> Pipeline:
    """Parse an mlir-opt style pipeline; syntax errors point at the line and column."""
    return Pipeline(_Parser(text).pipeline(), text)


def passes_in(text: str) -> list[str]:
    """The names of the passes a pipeline runs, nested ones included, in order."""

    def names(element: PassSpec | NestedPipeline) -> list[str]:
        if isinstance(element, PassSpec):
            return [element.name]
        return [name for inner in element.elements for name in names(inner)]

    return names(parse_pipeline(text).root)


def chain_pipelines(*pipelines: str | None) -> str | None:
    """One pipeline that runs the given ones in order (None ones skipped; None if all are)."""
    elements = [str(e) for text in pipelines if text for e in parse_pipeline(text).root.elements]
    return f"{ROOT_ANCHOR}({','.join(elements)})" if any(pipelines) else None


# --- building the PassManager -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IRPrinting:
    """mlir-opt's `--mlir-print-ir-*` flags; dumps go to native stderr, like mlir-opt's."""

    before_all: bool = False
    after_all: bool = False
    after_change: bool = False
    after_failure: bool = False
    module_scope: bool = False
    debuginfo: bool = False

    def enabled(self) -> bool:
        return self.before_all or self.after_all or self.after_change or self.after_failure


def build_pass_manager(
    pipeline: str | Pipeline,
    *,
    context: ir.Context | None = None,
    printing: IRPrinting | None = None,
    verify_each: bool = True,
) -> PassManager:
    """One PassManager for `pipeline` in `context` (default: the current `with ctx:` context).

    Raises EffcError for unknown passes or options (with close matches), effc passes nested under
    anchors other than func.func, and upstream elements MLIR rejects, each pointing at the column.
    """
    parsed = parse_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    ctx = context if context is not None else ir.Context.current
    steps = _Scheduler(parsed).steps(parsed.root, ())
    pm = PassManager(ROOT_ANCHOR, ctx)
    for step in steps:
        if isinstance(step, UpstreamPipelinePass):
            pm.add(step.upstream_pipeline())
        elif isinstance(step, ModulePass):
            # `argument` is what str(pm) and IR dumps show: the options make it round-trip.
            pm.add(
                _as_callable(step),
                name=type(step).__name__,
                argument=step.pipeline_text(),
                description=step.description,
            )
        else:
            _add_upstream(pm, parsed, step, ctx)
    pm.enable_verifier(verify_each)
    if printing is not None and printing.enabled():
        ctx.enable_multithreading(False)  # MLIR aborts when IR printing meets a threaded context
        pm.enable_ir_printing(
            print_before_all=printing.before_all,
            print_after_all=printing.after_all or printing.after_change,
            print_after_change=printing.after_change,
            print_after_failure=printing.after_failure,
            print_module_scope=printing.module_scope,
            enable_debug_info=printing.debuginfo,
        )
    return pm


@dataclasses.dataclass(frozen=True)
class _UpstreamRun:
    """Consecutive upstream elements: their text for `pm.add`, and each leaf with its anchors."""

    texts: tuple[str, ...]
    leaves: tuple[tuple[tuple[str, ...], PassSpec], ...]


_Step = ModulePass | _UpstreamRun


class _Scheduler:
    """Flattens the parsed tree into upstream runs and effc passes, hoisting nested effc passes."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.effc_names = set(registry.pass_names())

    def steps(self, nested: NestedPipeline, anchors: tuple[str, ...]) -> list[_Step]:
        """`nested`'s elements as steps; upstream runs are wrapped in `nested.anchor` by the caller."""
        steps: list[_Step] = []

        def add_upstream(run: _UpstreamRun) -> None:
            if steps and isinstance(steps[-1], _UpstreamRun):
                last = steps[-1]
                steps[-1] = _UpstreamRun(last.texts + run.texts, last.leaves + run.leaves)
            else:
                steps.append(run)

        for element in nested.elements:
            if isinstance(element, NestedPipeline):
                for step in self.steps(element, (*anchors, element.anchor)):
                    if isinstance(step, _UpstreamRun):
                        wrapped = f"{element.anchor}({','.join(step.texts)})"
                        add_upstream(_UpstreamRun((wrapped,), step.leaves))
                    else:
                        steps.append(step)
            elif element.name in self.effc_names:
                steps.append(self.effc_pass(element, anchors))
            else:
                add_upstream(_UpstreamRun((element.text,), ((anchors, element),)))
        return steps

    def effc_pass(self, spec: PassSpec, anchors: tuple[str, ...]) -> ModulePass:
        blocked = [a for a in anchors if a not in _HOISTABLE_ANCHORS]
        if blocked:
            raise self.pipeline.error(
                spec.offset,
                f"effc pass '{spec.name}' cannot run under '{blocked[0]}': effc passes run on "
                f"{ROOT_ANCHOR} (or inside func.func, hoisted); move it out of '{blocked[0]}(...)'",
            )
        raw: dict[str, str] = {}
        for option in spec.options:
            if option.key in raw:
                message = f"option '{option.key}' of '{spec.name}' given twice"
                raise self.pipeline.error(option.offset, message)
            raw[option.key] = option.unquoted()
        try:
            return registry.get_pass(spec.name).from_options(raw)
        except OptionError as err:
            offset = next(o.offset for o in spec.options if o.key == err.key)
            raise self.pipeline.error(offset, err.message) from None


def _as_callable(instance: ModulePass) -> Callable[[ir.Operation, Any], None]:
    """The pass as a module-level Python pass; `PassFailure` becomes an MLIR error diagnostic."""

    def run_pass(op: ir.Operation, pass_: Any) -> None:
        try:
            with op.context:  # pm.run sets no default context; attribute/type getters need one
                instance.apply(op)
        except PassFailure as failure:
            (failure.location or op.location).emit_error(failure.message)
            pass_.signal_pass_failure()

    return run_pass


def _add_upstream(pm: PassManager, pipeline: Pipeline, run: _UpstreamRun, ctx: ir.Context) -> None:
    """`pm.add` a run of upstream text once MLIR is known to accept it; else explain the culprit."""
    text = ",".join(run.texts)
    rejected = _mlir_rejects(f"{ROOT_ANCHOR}({text})", ctx)
    if rejected is None:
        pm.add(text)
        return
    for anchors, spec in run.leaves:
        wrapped = spec.text
        for anchor in reversed(anchors):
            wrapped = f"{anchor}({wrapped})"
        message = _mlir_rejects(f"{ROOT_ANCHOR}({wrapped})", ctx)
        if message is not None:
            raise _explain_upstream(pipeline, spec, message, ctx)
    raise pipeline.error(run.leaves[0][1].offset, f"MLIR rejected '{text}': {' '.join(rejected.split())}")


def _mlir_rejects(pipeline_text: str, ctx: ir.Context) -> str | None:
    """None if MLIR parses `pipeline_text`, else its error text (exception and native stderr).

    The parse runs in a forked child: pass-pipeline builders abort the whole process (LLVM ERROR)
    on an anchor mismatch, e.g. `func.func(torch-simplification-pipeline)`, instead of raising.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report through the pipe, never return into the caller's code
        status = 1
        try:
            os.dup2(write_end, 2)
            PassManager.parse(pipeline_text, ctx)
            status = 0
        except ValueError as err:
            os.write(2, str(err).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    output, timed_out = b"", False
    with os.fdopen(read_end, "rb") as reader:
        while True:
            if not select.select([reader], [], [], _PROBE_TIMEOUT_S)[0]:
                timed_out = True  # stuck on a lock held at fork time: let the real parse decide
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(reader.fileno(), 65536)
            if not chunk:
                break
            output += chunk
    _, status = os.waitpid(pid, 0)
    if status == 0 or timed_out:
        return None
    return output.decode(errors="replace").strip() or f"MLIR's pipeline parser died (wait status {status})"


def _explain_upstream(pipeline: Pipeline, spec: PassSpec, message: str, ctx: ir.Context) -> EffcError:
    """Turn MLIR's error for one upstream element into effc's positioned one-liner."""
    if "does not refer to a registered pass or pass pipeline" in message:
        close = _close_pass_names(spec.name, ctx)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return pipeline.error(spec.offset, f"unknown pass '{spec.name}'{hint} (effc passes: 'effc opt --list-passes')")
    restricted = re.search(r"restricted to '([^']+)' on a PassManager intended to run on '([^']+)'", message)
    if restricted:
        op_name, anchor = restricted.groups()
        fix = f"move it out of '{anchor}(...)'" if op_name == ROOT_ANCHOR else f"nest it: {op_name}({spec.text})"
        return pipeline.error(spec.offset, f"pass '{spec.name}' runs on '{op_name}', not '{anchor}'; {fix}")
    no_option = re.search(r"no such option (\S+)", message)
    if no_option:
        key = no_option[1]
        offset = next((o.offset for o in spec.options if o.key == key), spec.offset)
        close = difflib.get_close_matches(key, _upstream_catalog().get(spec.name, ()), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return pipeline.error(offset, f"pass '{spec.name}' has no option '{key}'{hint}")
    bad_value = re.search(r"for the --(\S+) option: (.*)", message)
    if bad_value:
        offset = next((o.offset for o in spec.options if o.key == bad_value[1]), spec.offset)
        return pipeline.error(offset, f"invalid value for option '{bad_value[1]}' of '{spec.name}': {bad_value[2]}")
    reason = " ".join(message.split())
    return pipeline.error(spec.offset, f"MLIR rejected '{spec.text}': {reason}")


def _close_pass_names(name: str, ctx: ir.Context) -> list[str]:
    """Close matches among effc passes and the upstream passes this MLIR build accepts."""
    effc_names = registry.pass_names()
    accepted = []
    for candidate in difflib.get_close_matches(name, [*effc_names, *_upstream_catalog()], n=6):
        if (
            candidate in effc_names
            or _mlir_rejects(f"{ROOT_ANCHOR}({candidate})", ctx) is None
            or _mlir_rejects(f"{ROOT_ANCHOR}(func.func({candidate}))", ctx) is None
        ):
            accepted.append(candidate)
    return accepted[:3]


@functools.cache
def _upstream_catalog() -> dict[str, tuple[str, ...]]:
    """Upstream pass names and their option names, read from `torch-mlir-opt --help` and `iree-opt
    --help` (the bindings cannot list registered passes). Only used for error suggestions."""
    tools = [
        Path(ir.__file__).parent / "_mlir_libs" / "torch-mlir-opt",
        Path(sys.executable).parent / "iree-opt",
    ]
    catalog: dict[str, tuple[str, ...]] = {}
    for tool in tools:
        if not tool.exists():
            continue
        try:
            help_text = subprocess.run(
                [str(tool), "--help"], capture_output=True, text=True, timeout=30, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        for name, options in _passes_in_help(help_text).items():
            catalog.setdefault(name, options)
    return catalog


def _passes_in_help(help_text: str) -> dict[str, tuple[str, ...]]:
    """Parse the 'Compiler passes to run' section of an MLIR tool's `--help`."""
    passes: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_section = False
    for line in help_text.splitlines():
        if "Compiler passes to run" in line:
            in_section = True
            continue
        match = re.match(r"( +)--([A-Za-z0-9_.\-]+)", line)
        if not in_section or match is None:
            continue
        indent = len(match[1])
        if indent <= 2:
            break
        if indent == 6:
            current = passes.setdefault(match[2], [])
        elif indent > 6 and current is not None:
            current.append(match[2])
    return {name: tuple(options) for name, options in passes.items()}


# --- running ----------------------------------------------------------------------------------------


@overload
def run(
    module: ir.Module,
    pipeline: str | Pipeline,
    *,
    print_ir_before_all: bool = ...,
    print_ir_after_all: bool = ...,
    print_ir_after_change: bool = ...,
    print_ir_after_failure: bool = ...,
    print_ir_module_scope: bool = ...,
    verify_each: bool = ...,
    source_name: str = ...,
    repro_dir: str | os.PathLike[str] | None = ...,
) -> ir.Module: ...
@overload
def run(
    module: str,
    pipeline: str | Pipeline,
    *,
    print_ir_before_all: bool = ...,
    print_ir_after_all: bool = ...,
    print_ir_after_change: bool = ...,
    print_ir_after_failure: bool = ...,
    print_ir_module_scope: bool = ...,
    verify_each: bool = ...,
    source_name: str = ...,
    repro_dir: str | os.PathLike[str] | None = ...,
) -> str: ...


def run(
    module: ir.Module | str,
    pipeline: str | Pipeline,
    *,
    print_ir_before_all: bool = False,
    print_ir_after_all: bool = False,
    print_ir_after_change: bool = False,
    print_ir_after_failure: bool = False,
    print_ir_module_scope: bool = False,
    verify_each: bool = True,
    source_name: str = "<input>",
    repro_dir: str | os.PathLike[str] | None = None,
) -> ir.Module | str:
    """Run `pipeline` on `module` in place and return it; MLIR text in gives MLIR text out.

    `print_ir_*` are mlir-opt's `--mlir-print-ir-*` (dumps go to native stderr). On failure the input
    IR is saved to `repro_dir` (default: the temp dir) as `effc-repro-<hash>.mlir` and the EffcError
    names the `effc opt` command that reproduces it.
    """
    parsed = parse_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    printing = IRPrinting(
        before_all=print_ir_before_all,
        after_all=print_ir_after_all,
        after_change=print_ir_after_change,
        after_failure=print_ir_after_failure,
        module_scope=print_ir_module_scope,
    )
    if isinstance(module, str):
        parsed_module = parse_module(module, new_context(), source_name)
        _run_module(parsed_module, parsed, printing, verify_each, source_name, repro_dir)
        return str(parsed_module)
    _run_module(module, parsed, printing, verify_each, source_name, repro_dir)
    return module


def _run_module(
    module: ir.Module,
    pipeline: Pipeline,
    printing: IRPrinting,
    verify_each: bool,
    source_name: str,
    repro_dir: str | os.PathLike[str] | None,
) -> None:
    pm = build_pass_manager(pipeline, context=module.context, printing=printing, verify_each=verify_each)
    snapshot = module.operation.clone()  # passes rewrite in place; the repro needs the input
    try:
        pm.run(module.operation)
    except ir.MLIRError as err:
        found = diagnostics.from_error(err)
        first = found[0].render(source_name).splitlines()[0] if found else str(err).splitlines()[0]
        repro = _write_repro(snapshot, pipeline, repro_dir)
        detail = "\n".join(d.render(source_name) for d in found)
        raise EffcError(f"pass pipeline failed: {first}; reproduce with: {repro}", detail=detail) from None
    except EffcError as err:
        repro = _write_repro(snapshot, pipeline, repro_dir)
        raise EffcError(f"{err.message}; reproduce with: {repro}", detail=err.detail) from None
    except Exception as err:
        err.add_note(f"reproduce with: {_write_repro(snapshot, pipeline, repro_dir)}")
        raise


def _write_repro(snapshot: ir.Operation, pipeline: Pipeline, repro_dir: str | os.PathLike[str] | None) -> str:
    """Save the pipeline's input IR and return the repro command.

    Constants are printed in full. Source locations are kept (an importer's Python file:line), except
    for IR parsed from a string (`loc("-":...)`): those lines would not match the repro file's.
    """
    from_string = str(snapshot.location).startswith('loc("-":')
    text = snapshot.get_asm(enable_debug_info=not from_string)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    directory = Path(repro_dir if repro_dir is not None else tempfile.gettempdir())
    directory.mkdir(parents=True, exist_ok=True)
    path = write_atomic(directory / f"effc-repro-{digest}.mlir", text)
    return f"effc opt {shlex.quote(str(path))} --pass-pipeline={shlex.quote(str(pipeline))}"
