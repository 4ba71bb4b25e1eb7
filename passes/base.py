"""The effc pass interface, modelled on xDSL: a pass is a small frozen dataclass.

`name` is what pipelines call it (`effc-profile`), the dataclass fields are its options
(`effc-profile{target=h100}`; kebab-case in text, snake_case in Python), and `apply` rewrites a
`builtin.module` in place. Passes run at module level because torch-mlir's bindings abort when a
Python pass is nested under `func.func`; walking into functions is the pass's own job.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, ClassVar, get_args, get_origin

from torch_mlir import ir
from torch_mlir.passmanager import PassManager

from effc.compiler.errors import EffcError


@dataclasses.dataclass(frozen=True)
class ModulePass:
    """Base class of every effc pass.

    `apply` signals failure by raising `PassFailure` (an MLIR error diagnostic at the offending op,
    so `--verify-diagnostics` and repro reports see it) or `EffcError` (a plain user error).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    # Passes that find attention per query head: importing with `fold_gqa` would hide those heads from them.
    reads_query_heads: ClassVar[bool] = False

    def apply(self, module: ir.Operation) -> None:
        """Rewrite or annotate `module` (a `builtin.module` operation) in place."""
        raise NotImplementedError

    @classmethod
    def options(cls) -> list[dataclasses.Field[Any]]:
        """The pass's options, in declaration order."""
        return list(dataclasses.fields(cls))

    @classmethod
    def from_options(cls, raw: dict[str, str]) -> ModulePass:
        """Build the pass from textual options, converting each value to the field's type."""
        fields = {f.name.replace("_", "-"): f for f in cls.options()}
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for key, text in raw.items():
            field = fields.get(key)
            if field is None:
                close = difflib.get_close_matches(key, list(fields), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                known = ", ".join(fields) or "none"
                raise OptionError(key, f"pass '{cls.name}' has no option '{key}'{hint} (options: {known})")
            try:
                values[field.name] = _convert(cls.name, key, text, hints[field.name])
            except EffcError as err:
                raise OptionError(key, err.message) from None
        return cls(**values)

    def pipeline_text(self) -> str:
        """This pass as a pipeline element, options included, so pipelines round-trip."""
        parts = []
        for field in self.options():
            value = getattr(self, field.name)
            if value != field.default:
                parts.append(f"{field.name.replace('_', '-')}={_render(value)}")
        return f"{self.name}{{{' '.join(parts)}}}" if parts else self.name


@dataclasses.dataclass(frozen=True)
class UpstreamPipelinePass(ModulePass):
    """A named effc stage implemented by upstream MLIR/torch-mlir passes.

    The pipeline builder adds `upstream_pipeline()` to the PassManager as text instead of a Python
    callable, so `--mlir-print-ir-after-all`, timing and diagnostics see every upstream pass.
    """

    def upstream_pipeline(self) -> str:
        """The textual pipeline elements (anchored at `builtin.module`) this stage stands for."""
        raise NotImplementedError

    def apply(self, module: ir.Operation) -> None:
        """Run the stage on its own, outside a pipeline."""
        PassManager.parse(f"builtin.module({self.upstream_pipeline()})", module.context).run(module)


class OptionError(EffcError):
    """A bad pass option; `key` lets the pipeline parser point at it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class PassFailure(EffcError):
    """Raised by `apply` to fail the pipeline with an MLIR error diagnostic at `location`."""

    def __init__(self, message: str, location: ir.Location | None = None) -> None:
        super().__init__(message)
        self.location = location


def option_help(field: dataclasses.Field[Any]) -> str:
    """The one-line help of an option, taken from the field's `help` metadata."""
    return str(field.metadata.get("help", ""))


def option_type(pass_cls: type[ModulePass], field: dataclasses.Field[Any]) -> str:
    """The option's type as users write values: `int`, `a|b`, `list of str`, `int or none`."""
    return _type_text(typing.get_type_hints(pass_cls)[field.name])


def option_default(field: dataclasses.Field[Any]) -> str:
    """The option's default as pipeline text (what `pipeline_text` omits)."""
    if field.default is not dataclasses.MISSING:
        return _render(field.default)
    if field.default_factory is not dataclasses.MISSING:
        return _render(field.default_factory())
    return "required"


def _type_text(hint: Any) -> str:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = get_args(hint)
        text = " or ".join(_type_text(a) for a in args if a is not type(None))
        return f"{text} or none" if type(None) in args else text
    if origin is typing.Literal:
        return "|".join(str(a) for a in get_args(hint))
    if origin is tuple:
        return f"list of {_type_text(get_args(hint)[0])}"
    return str(getattr(hint, "__name__", hint))


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(_render(v) for v in value)
    if value is None:
        return "none"
    text = str(value)
    if text == "" or any(c.isspace() or c in "{}'\"" for c in text):
        return f"'{text}'" if "'" not in text else f'"{text}"'
    return text


def _convert(pass_name: str, key: str, text: str, hint: Any) -> Any:
    """Parse one option value; the error names the pass, the option and the expected type."""
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        choices = [a for a in get_args(hint) if a is not type(None)]
        if text in ("", "none", "None") and len(choices) < len(get_args(hint)):
            return None
        hint = choices[0]
        origin = get_origin(hint)
    try:
        if origin is typing.Literal:
            allowed = [str(a) for a in get_args(hint)]
            if text not in allowed:
                raise ValueError(f"one of {', '.join(allowed)}")
            return text
        if origin is tuple:
            (item,) = get_args(hint)[:1]
            return tuple(_convert(pass_name, key, part, item) for part in text.split(",") if part)
        if hint is bool:
            if text.lower() in ("1", "true", "yes", "on", ""):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("true or false")
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        return str(text)
    except ValueError as err:
        expected = str(err) if str(err).startswith(("one of", "true or")) else getattr(hint, "__name__", hint)
        raise EffcError(f"pass '{pass_name}': option '{key}' got '{text}', expected {expected}") from None
