"""The one registry of effc passes, xDSL `get_all_passes` style.

Each entry maps a pipeline name to a thunk that imports the pass class, so listing or parsing
pipelines never imports a pass module (and its dependencies) that the pipeline does not use.
To add a pass: write `passes/<module>.py` with a `ModulePass` subclass and add one line below.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from effc.compiler.errors import EffcError
from effc.passes.base import ModulePass


def _chai() -> type[ModulePass]:
    from effc.passes.chai import ChaiPass

    return ChaiPass


def _carbon() -> type[ModulePass]:
    from effc.passes.carbon import CarbonPass

    return CarbonPass


def _fold_broadcast_bmm() -> type[ModulePass]:
    from effc.passes.fold_broadcast_bmm import FoldBroadcastBmmPass

    return FoldBroadcastBmmPass


def _hoist_softmax_guard() -> type[ModulePass]:
    from effc.passes.hoist_softmax_guard import HoistSoftmaxGuardPass

    return HoistSoftmaxGuardPass


def _move_matmul_scale() -> type[ModulePass]:
    from effc.passes.move_matmul_scale import MoveMatmulScalePass

    return MoveMatmulScalePass


def _narrow_softmax() -> type[ModulePass]:
    from effc.passes.narrow_softmax import NarrowSoftmaxPass

    return NarrowSoftmaxPass


def _narrow_weights() -> type[ModulePass]:
    from effc.passes.narrow_weights import NarrowWeightsPass

    return NarrowWeightsPass


def _profile() -> type[ModulePass]:
    from effc.passes.profile import ProfilePass

    return ProfilePass


def _quantize_dynamic() -> type[ModulePass]:
    from effc.passes.quantize_dynamic import QuantizeDynamicPass

    return QuantizeDynamicPass


def _raise_attention() -> type[ModulePass]:
    from effc.passes.raise_attention import RaiseAttentionPass

    return RaiseAttentionPass


def _rational_gelu() -> type[ModulePass]:
    from effc.passes.rational_gelu import RationalGeluPass

    return RationalGeluPass


def _read_taps() -> type[ModulePass]:
    from effc.passes.read_taps import ReadTapsPass

    return ReadTapsPass


def _softmax_guard_from_max() -> type[ModulePass]:
    from effc.passes.softmax_guard_from_max import SoftmaxGuardFromMaxPass

    return SoftmaxGuardFromMaxPass


def _split_bf16() -> type[ModulePass]:
    from effc.passes.split_bf16 import SplitBf16Pass

    return SplitBf16Pass


def _split_concat_matmul() -> type[ModulePass]:
    from effc.passes.split_concat_matmul import SplitConcatMatmulPass

    return SplitConcatMatmulPass


def _split_projections() -> type[ModulePass]:
    from effc.passes.split_projections import SplitProjectionsPass

    return SplitProjectionsPass


def _hopper_kernels() -> type[ModulePass]:
    from effc.passes.hopper_kernels import HopperKernelsPass

    return HopperKernelsPass


def _vnni_matmul() -> type[ModulePass]:
    from effc.passes.vnni_matmul import VnniMatmulPass

    return VnniMatmulPass


def _lower_to_linalg() -> type[ModulePass]:
    from effc.passes.lower import LowerToLinalgPass

    return LowerToLinalgPass


# name -> thunk returning the pass class; keep sorted by name.
_PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "effc-carbon": _carbon,
    "effc-chai": _chai,
    "effc-fold-broadcast-bmm": _fold_broadcast_bmm,
    "effc-hoist-softmax-guard": _hoist_softmax_guard,
    "effc-hopper-kernels": _hopper_kernels,
    "effc-lower-to-linalg": _lower_to_linalg,
    "effc-move-matmul-scale": _move_matmul_scale,
    "effc-narrow-softmax": _narrow_softmax,
    "effc-narrow-weights": _narrow_weights,
    "effc-profile": _profile,
    "effc-quantize-dynamic": _quantize_dynamic,
    "effc-raise-attention": _raise_attention,
    "effc-rational-gelu": _rational_gelu,
    "effc-read-taps": _read_taps,
    "effc-softmax-guard-from-max": _softmax_guard_from_max,
    "effc-split-bf16": _split_bf16,
    "effc-split-concat-matmul": _split_concat_matmul,
    "effc-split-projections": _split_projections,
    "effc-vnni-matmul": _vnni_matmul,
}


def pass_names() -> list[str]:
    """Every registered effc pass name, sorted, without importing any pass module."""
    return sorted(_PASSES)


def get_pass(name: str) -> type[ModulePass]:
    """The pass class registered as `name`; unknown names list close matches."""
    thunk = _PASSES.get(name)
    if thunk is None:
        close = difflib.get_close_matches(name, list(_PASSES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise EffcError(f"unknown effc pass '{name}'{hint}")
    cls = thunk()
    if cls.name != name:
        raise AssertionError(f"registry entry '{name}' imports pass named '{cls.name}'")
    return cls


def all_passes() -> dict[str, type[ModulePass]]:
    """Every registered pass class by name (imports them all: for `--list-passes`)."""
    return {name: get_pass(name) for name in pass_names()}
