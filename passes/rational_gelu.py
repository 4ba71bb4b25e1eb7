"""`effc-rational-gelu`: GELU's erf as one rational function, for IREE's CPU code.

`aten.gelu(x)` (the erf form, BERT's and ViT's) is `x/2 * (1 + erf(x/sqrt(2)))`. torch-mlir lowers it with a
division by sqrt(2), and IREE 3.13 approximates `math.erf` piecewise: three intervals of a ratio of
polynomials, their coefficients chosen per element with blends (18 per 16 elements), and a division, two divisions
in all, inside the epilogue of the matmul feeding the GELU. MiniLM's call spent about 5% there on the Zen 4 (GELU
replaced by ReLU, as a probe: 9.78 -> 9.25 ms; bench/perf/NOTES.md, twenty-first session).

Here erf(u) for u = clamp(x/sqrt(2), -4, 4) is u * P(u²) / Q(u²), P of degree 6 and Q of degree 5 (in u²): one
division, no blends: MiniLM's up-projection dispatch went from 1265 to 715 vector instructions. erf rounds to +-1
in f32 beyond |u| = 3.92, hence the clamp. The coefficients were fitted to erf on [0, 4] by Loeb's iteratively
reweighted least squares on the relative error (numpy, float64): 4.6e-9 in float64; evaluated in f32 the absolute
error of erf stays below 5e-7 (a few ulp of 1 near |u| = 3.6). The GELU is then 1.1e-6 off a float64 GELU at most,
torch's own f32 GELU 1.2e-6 (tests/test_graph_rewrites.py). So this is not a precision trade. f32 GELUs only (in
f16 or bf16 the small coefficients underflow); the tanh form (`approximate="tanh"`) is another function and stays
as it is. Both are counted in the module attribute `effc.rational_gelu`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar

from torch_mlir import ir

from effc.passes.base import ModulePass
from effc.passes.chai import functions
from effc.passes.chai_narrow import Builder, producer, tensor_type
from effc.passes.site_rewrites import Skip, rewrite_sites

REPORT_ATTRIBUTE = "effc.rational_gelu"
# erf(u) = u * P(u²) / Q(u²) on [-ERF_CLAMP, ERF_CLAMP]; coefficients from the constant term up.
ERF_CLAMP = 4.0
ERF_NUMERATOR = (
    1.1283791694387397,
    0.18514524483239547,
    0.05430600837952599,
    0.0038468975783530527,
    0.00037942360918653454,
    4.680629436081592e-06,
    -1.317370194555904e-08,
)
ERF_DENOMINATOR = (
    1.0,
    0.4974141167525442,
    0.11393161813022071,
    0.015455907455485201,
    0.0013067837291237806,
    6.307351615210878e-05,
)


def _approximation(gelu: ir.Operation) -> str | None:
    """The string constant of `gelu`'s `approximate` operand, or None where it is not a constant."""
    op = producer(gelu.operands[1])
    if op is None or op.name != "torch.constant.str":
        return None
    return ir.StringAttr(op.attributes["value"]).value


def _horner(b: Builder, u2: ir.Value, coefficients: Sequence[float], result: ir.Type) -> ir.Value:
    """coefficients[0] + coefficients[1]·u2 + ... as torch ops, highest power first."""
    one = b.int(1)
    acc = b.op("torch.aten.mul.Scalar", [u2, b.float(coefficients[-1])], [result]).result
    for index in range(len(coefficients) - 2, -1, -1):
        acc = b.op("torch.aten.add.Scalar", [acc, b.float(coefficients[index]), one], [result]).result
        if index:
            acc = b.op("torch.aten.mul.Tensor", [acc, u2], [result]).result
    return acc


def _rewrite(gelu: ir.Operation) -> None:
    """Replace an f32 erf-form `aten.gelu` with x/2 * (1 + u·P(u²)/Q(u²)) (else `Skip`)."""
    if _approximation(gelu) != "none":
        raise Skip("tanh form or unknown approximation")
    value_type = tensor_type(gelu.results[0])
    if value_type is None or value_type.dtype != "f32":
        raise Skip("not f32")
    b = Builder(gelu)
    t = gelu.results[0].type
    x = gelu.operands[0]
    scaled = b.op("torch.aten.mul.Scalar", [x, b.float(math.sqrt(0.5))], [t]).result
    u = b.op("torch.aten.clamp", [scaled, b.float(-ERF_CLAMP), b.float(ERF_CLAMP)], [t]).result
    u2 = b.op("torch.aten.mul.Tensor", [u, u], [t]).result
    numerator = b.op("torch.aten.mul.Tensor", [u, _horner(b, u2, ERF_NUMERATOR, t)], [t]).result
    erf = b.op("torch.aten.div.Tensor", [numerator, _horner(b, u2, ERF_DENOMINATOR, t)], [t]).result
    one_plus_erf = b.op("torch.aten.add.Scalar", [erf, b.float(1.0), b.int(1)], [t]).result
    half_x = b.op("torch.aten.mul.Scalar", [x, b.float(0.5)], [t]).result
    gelu.results[0].replace_all_uses_with(b.op("torch.aten.mul.Tensor", [half_x, one_plus_erf], [t]).result)


def rational_gelu_module(module: ir.Operation) -> str:
    """Rewrite every f32 erf-form GELU of `module` (a builtin.module op); returns the report."""
    with module.context:
        sites = [
            op.operation
            for _, _, block in functions(module)
            for op in block.operations
            if op.operation.name == "torch.aten.gelu"
        ]
        return rewrite_sites(module, sites, _rewrite, attribute=REPORT_ATTRIBUTE, what="GELUs with a rational erf")


@dataclasses.dataclass(frozen=True)
class RationalGeluPass(ModulePass):
    name: ClassVar[str] = "effc-rational-gelu"
    description: ClassVar[str] = (
        "Write f32 erf-form GELUs with erf as one rational function (accurate to f32): one division and no "
        "interval blends instead of IREE's piecewise erf (llvm-cpu)."
    )

    def apply(self, module: ir.Operation) -> None:
        rational_gelu_module(module)
