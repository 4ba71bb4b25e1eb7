"""CHAI cluster plans: which attention heads share attention scores, per layer, as versioned JSON.

A plan is produced once per model by `effc chai calibrate` and consumed by the `effc-chai` pass,
the PyTorch reference and the KV-cache accounting. It names, per attention layer, the clusters of
query heads and each cluster's representative (the one head whose Q·Kᵀ is still computed). For
grouped-query models a K head can only be dropped when no representative uses its KV group, so the
plan also derives which KV heads survive. Loading validates everything and fails with one line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from effc.compiler.errors import EffcError
from effc.compiler.fileio import read_text, versioned_json

PLAN_FORMAT = "effc-chai-plan"
PLAN_VERSION = 1


@dataclass(frozen=True)
class LayerShape:
    """What a plan must match in one attention layer: query heads, KV heads and head size."""

    heads: int
    kv_heads: int
    head_dim: int

    @property
    def group(self) -> int:
        """Query heads per KV head (1 for multi-head attention)."""
        return self.heads // self.kv_heads


def structure_fingerprint(shapes: list[LayerShape]) -> str:
    """A digest of the attention structure, computable from the torch model and from the MLIR alike."""
    text = ";".join(f"{s.heads}:{s.kv_heads}:{s.head_dim}" for s in shapes)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LayerPlan:
    """One layer: `clusters[c]` lists the heads of cluster c, `representatives[c]` is one of them."""

    layer: int
    heads: int
    kv_heads: int
    clusters: tuple[tuple[int, ...], ...]
    representatives: tuple[int, ...]
    k_source: str = "elbow"  # elbow | override | full | random | uniform
    elbow: int | None = None
    error_curve: tuple[float, ...] = ()
    curve_unit: str = "clusters"  # clusters (K-means over heads) | kv_heads (kept KV groups)
    mean_similarity: float | None = None

    @property
    def k(self) -> int:
        return len(self.clusters)

    @property
    def group(self) -> int:
        return self.heads // self.kv_heads

    def cluster_of_head(self) -> tuple[int, ...]:
        """For each head, the index of its cluster."""
        owner = [0] * self.heads
        for c, members in enumerate(self.clusters):
            for head in members:
                owner[head] = c
        return tuple(owner)

    def representative_of_head(self) -> tuple[int, ...]:
        owner = self.cluster_of_head()
        return tuple(self.representatives[owner[h]] for h in range(self.heads))

    def kept_kv_heads(self) -> tuple[int, ...]:
        """KV heads whose K is still needed: those of the representatives."""
        return tuple(sorted({r // self.group for r in self.representatives}))

    def is_identity(self) -> bool:
        return self.k == self.heads


@dataclass(frozen=True)
class ChaiPlan:
    """A whole model's plan plus what it was calibrated on."""

    model: str
    fingerprint: str
    layers: tuple[LayerPlan, ...]
    head_dim: int
    weights_sha256: str | None = None
    calibration: dict[str, Any] = field(default_factory=dict)

    def shapes(self) -> list[LayerShape]:
        return [LayerShape(lp.heads, lp.kv_heads, self.head_dim) for lp in self.layers]

    def to_json(self) -> str:
        body = {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "weights_sha256": self.weights_sha256,
            "head_dim": self.head_dim,
            "calibration": self.calibration,
            "layers": [_layer_json(lp) for lp in self.layers],
        }
        return json.dumps(body, indent=1) + "\n"

    def check_fits(self, shapes: list[LayerShape], what: str) -> None:
        """Fail with one line unless this plan was made for attention shaped like `shapes`."""
        if len(shapes) != len(self.layers):
            raise EffcError(
                f"CHAI plan for '{self.model}' has {len(self.layers)} attention layers but {what} has {len(shapes)}; "
                "calibrate a plan for this model with 'effc chai calibrate'"
            )
        for lp, shape in zip(self.layers, shapes, strict=True):
            if lp.heads != shape.heads or lp.kv_heads != shape.kv_heads:
                raise EffcError(
                    f"CHAI plan layer {lp.layer} is for {lp.heads} heads / {lp.kv_heads} KV heads but {what} has "
                    f"{shape.heads} / {shape.kv_heads} there; calibrate a plan for this model"
                )
        found = structure_fingerprint(shapes)
        if found != self.fingerprint:
            raise EffcError(
                f"CHAI plan fingerprint {self.fingerprint} (model '{self.model}') does not match {what} "
                f"(fingerprint {found}); calibrate a plan for this model"
            )

    def kv_cache_bytes(self, context: int, batch: int = 1, dtype_bytes: int = 4) -> dict[str, int]:
        """K and V cache bytes for `context` tokens, before and after CHAI (whole KV heads only)."""
        per_head = batch * context * self.head_dim * dtype_bytes
        k_before = sum(lp.kv_heads for lp in self.layers) * per_head
        k_after = sum(len(lp.kept_kv_heads()) for lp in self.layers) * per_head
        return {"k_before": k_before, "v_before": k_before, "k_after": k_after, "v_after": k_before}


def _layer_json(lp: LayerPlan) -> dict[str, Any]:
    body = asdict(lp)
    body["clusters"] = [list(c) for c in lp.clusters]
    body["representatives"] = list(lp.representatives)
    body["error_curve"] = [round(e, 6) for e in lp.error_curve]
    body["k"] = lp.k
    body["kept_kv_heads"] = list(lp.kept_kv_heads())
    return body


def validate_layer(lp: LayerPlan, where: str) -> None:
    """Every head in exactly one cluster, one representative per cluster, inside its cluster."""
    if lp.heads < 1 or lp.kv_heads < 1 or lp.heads % lp.kv_heads:
        raise EffcError(
            f"{where}: layer {lp.layer} has {lp.heads} heads and {lp.kv_heads} KV heads; heads must be a multiple"
        )
    seen: list[int] = [h for members in lp.clusters for h in members]
    for head in seen + list(lp.representatives):
        if not 0 <= head < lp.heads:
            raise EffcError(
                f"{where}: layer {lp.layer} names head {head}, but the layer has {lp.heads} heads (0..{lp.heads - 1})"
            )
    if sorted(seen) != list(range(lp.heads)):
        missing = sorted(set(range(lp.heads)) - set(seen))
        twice = sorted({h for h in seen if seen.count(h) > 1})
        raise EffcError(
            f"{where}: layer {lp.layer} clusters must cover each head once (missing {missing}, repeated {twice})"
        )
    if len(lp.representatives) != len(lp.clusters):
        raise EffcError(
            f"{where}: layer {lp.layer} has {len(lp.clusters)} clusters but {len(lp.representatives)} representatives"
        )
    for members, rep in zip(lp.clusters, lp.representatives, strict=True):
        if rep not in members:
            raise EffcError(f"{where}: layer {lp.layer} representative {rep} is not in its cluster {list(members)}")


def plan_from_json(text: str, where: str = "CHAI plan") -> ChaiPlan:
    """Parse and validate plan JSON; any problem is one line naming `where`."""
    body = versioned_json(
        text, where, format_name=PLAN_FORMAT, version=PLAN_VERSION, kind="CHAI plan", maker="effc chai calibrate"
    )
    try:
        layers = tuple(
            LayerPlan(
                layer=int(raw["layer"]),
                heads=int(raw["heads"]),
                kv_heads=int(raw["kv_heads"]),
                clusters=tuple(tuple(int(h) for h in members) for members in raw["clusters"]),
                representatives=tuple(int(r) for r in raw["representatives"]),
                k_source=str(raw.get("k_source", "elbow")),
                elbow=None if raw.get("elbow") is None else int(raw["elbow"]),
                error_curve=tuple(float(e) for e in raw.get("error_curve", ())),
                curve_unit=str(raw.get("curve_unit", "clusters")),
                mean_similarity=None if raw.get("mean_similarity") is None else float(raw["mean_similarity"]),
            )
            for raw in body["layers"]
        )
        plan = ChaiPlan(
            model=str(body.get("model", "?")),
            fingerprint=str(body["fingerprint"]),
            layers=layers,
            head_dim=int(body["head_dim"]),
            weights_sha256=body.get("weights_sha256"),
            calibration=dict(body.get("calibration", {})),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise EffcError(f"{where}: malformed plan ({type(err).__name__}: {err})") from None
    for index, lp in enumerate(layers):
        if lp.layer != index:
            raise EffcError(f"{where}: layers must be listed in order; entry {index} is layer {lp.layer}")
        validate_layer(lp, where)
    return plan


def load_plan(path: str | Path) -> ChaiPlan:
    """Read and validate a plan file."""
    return plan_from_json(read_text(path, "CHAI plan"), where=f"CHAI plan '{path}'")
