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

from effc.compiler.errors import EffcError


@dataclasses.dataclass(frozen=True)
class ModulePass:
    """Base class of every effc pass."""

    name: ClassVar[str]
    description: ClassVar[str]

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
                raise EffcError(f"pass '{cls.name}' has no option '{key}'{hint} (options: {known})")
            values[field.name] = _convert(cls.name, key, text, hints[field.name])
        return cls(**values)

    def pipeline_text(self) -> str:
        """This pass as a pipeline element, options included, so pipelines round-trip."""
        parts = []
        for field in self.options():
            value = getattr(self, field.name)
            if value != field.default:
                parts.append(f"{field.name.replace('_', '-')}={_render(value)}")
        return f"{self.name}{{{' '.join(parts)}}}" if parts else self.name


def option_help(field: dataclasses.Field[Any]) -> str:
    """The one-line help of an option, taken from the field's `help` metadata."""
    return str(field.metadata.get("help", ""))


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(_render(v) for v in value)
    return str(value)


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
        raise EffcError(
            f"pass '{pass_name}': option '{key}' got '{text}', expected {expected}"
        ) from None
