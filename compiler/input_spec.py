"""MLIR-style input specs such as `1x128xi64` or `?x3x224x224xf32`.

`?` marks a dynamic dimension: it becomes a torch.export dynamic dim and stays dynamic in the
compiled module. Example tensors for tracing get a concrete size for it (`DYNAMIC_EXAMPLE_SIZE`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from effc.compiler.errors import EffcError

if TYPE_CHECKING:
    import torch

# torch.export specializes sizes 0 and 1, so a dynamic dimension is traced with a larger size.
DYNAMIC_EXAMPLE_SIZE = 8

DTYPES: dict[str, str] = {
    "f64": "float64",
    "f32": "float32",
    "f16": "float16",
    "bf16": "bfloat16",
    "i64": "int64",
    "si64": "int64",
    "i32": "int32",
    "si32": "int32",
    "i16": "int16",
    "i8": "int8",
    "si8": "int8",
    "ui8": "uint8",
    "i1": "bool",
}

_SPEC = re.compile(r"^(?:((?:\d+|\?)(?:x(?:\d+|\?))*)x)?([a-z]+\d+)$")


@dataclass(frozen=True)
class InputSpec:
    """One model input: shape (None for a dynamic dim) and dtype name (torch spelling)."""

    shape: tuple[int | None, ...]
    dtype: str

    @property
    def dynamic_dims(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.shape) if d is None)

    def example_shape(self) -> tuple[int, ...]:
        return tuple(DYNAMIC_EXAMPLE_SIZE if d is None else d for d in self.shape)

    def __str__(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        mlir_dtype = next(k for k, v in DTYPES.items() if v == self.dtype)
        return f"{dims}x{mlir_dtype}" if dims else mlir_dtype


def parse_input_spec(text: str) -> InputSpec:
    """Parse `1x128xi64`; errors name the spec and show the expected form."""
    match = _SPEC.match(text.strip())
    if not match or match.group(2) not in DTYPES:
        known = ", ".join(sorted(set(DTYPES)))
        raise EffcError(
            f"bad --input '{text}': expected an MLIR-style shape and dtype such as 1x128xi64 or ?x3x224x224xf32 "
            f"(dtypes: {known})"
        )
    dims = match.group(1)
    shape = tuple(None if d == "?" else int(d) for d in dims.split("x")) if dims else ()
    return InputSpec(shape, DTYPES[match.group(2)])


def example_tensor(spec: InputSpec, seed: int) -> torch.Tensor:
    """A non-trivial example input: integers in [0, 100) (valid token ids), floats from N(0, 1)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    shape = spec.example_shape()
    dtype = getattr(torch, spec.dtype)
    if dtype == torch.bool:
        return torch.ones(shape, dtype=dtype)
    if not dtype.is_floating_point:
        return torch.randint(0, 100, shape, generator=generator).to(dtype)
    return torch.randn(shape, generator=generator).to(dtype)
