"""Lowering stages: named effc passes that move a module from one IR level to the next.

effc's IR levels, in pipeline order:
  1. raw torch: the FX importer's output (`torch.aten.*` on `!torch.vtensor`).
  2. torch backend contract: value semantics, decomposed ops, known dtypes/ranks (what
     torch-mlir's `torchdynamo-export-to-torch-backend-pipeline` produces). effc's torch-level passes
     (e.g. `effc-profile`) run here.
  3. linalg-on-tensors: `linalg`/`tensor`/`arith`/`tm_tensor` ops on builtin tensors, IREE's input.
Passes after a lowering stage in the same pipeline (`canonicalize`, `func.func(cse)`) see level 3.
"""

from __future__ import annotations

import dataclasses

from effc.passes.base import UpstreamPipelinePass


@dataclasses.dataclass(frozen=True)
class LowerToLinalgPass(UpstreamPipelinePass):
    name = "effc-lower-to-linalg"
    description = (
        "Lower a torch-backend-contract module (stage 2) to linalg-on-tensors (stage 3), IREE's input, "
        "with torch-mlir's torch-backend-to-linalg-on-tensors-backend-pipeline, after decomposing what effc's "
        "torch-level passes wrote (aten.amax, aten.clamp_min: ops the linalg lowering takes only decomposed). Ops "
        "with no lowering fail with torch-mlir's 'failed to legalize operation' errors at their source locations."
    )

    allow_non_finites: bool = dataclasses.field(
        default=True,
        metadata={"help": "let ops emit inf/nan (max pooling starts at -inf); false: closest finite value"},
    )

    def upstream_pipeline(self) -> str:
        flag = "true" if self.allow_non_finites else "false"
        return (
            "func.func(torch-decompose-complex-ops),"
            f"torch-backend-to-linalg-on-tensors-backend-pipeline{{allow-non-finites={flag}}}"
        )
