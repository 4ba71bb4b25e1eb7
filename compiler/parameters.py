"""External weights: move a module's large constants into an IREE parameter archive (.irpa).

Why: a vmfb with its weights inlined is as large as the model, and a copy of every weight ships with
every recompile. With `--params model.irpa` the module refers to `#stream.parameter.named<"model"::KEY>`
globals and the weights live in one archive that IREE memory-maps at load time, like iree-turbine's
externalized parameters. The same module then runs against another archive with the same keys, for
example a splat archive (`--iree-parameter-splat`) to time a model on a machine its weights can't reach.

The rewrite works on the torch-dialect text handed to iree-compile: each
`torch.vtensor.literal(dense_resource<KEY>)` of at least `min_bytes` becomes a `util.global.load` of a
parameter-backed global plus `torch_c.from_builtin_tensor`, and its blob leaves the resource section.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effc.compiler.errors import EffcError

SCOPE = "model"
DEFAULT_MIN_BYTES = 4096
_LITERAL = re.compile(
    r"^(?P<indent>\s*)(?P<result>%[\w.$-]+) = torch\.vtensor\.literal\(dense_resource<(?P<key>[\w.$-]+)> : "
    r"(?P<tensor>tensor<[^>]*>)\) : (?P<vtensor>!torch\.vtensor<[^>]*>)$",
    re.MULTILINE,
)
_BLOB = re.compile(r'^\s*(?P<key>[\w.$-]+): "0x(?P<hex>[0-9A-Fa-f]*)",?\s*$', re.MULTILINE)
_RESOURCES = re.compile(r"\{-#\s*dialect_resources:.*#-\}\s*\Z", re.DOTALL)
# A dense_resource blob starts with its alignment as a 4-byte little-endian integer.
_BLOB_HEADER_BYTES = 4


@dataclass(frozen=True)
class Externalized:
    """Module text that refers to parameters, and the parameters' raw little-endian bytes by key."""

    text: str
    parameters: dict[str, bytes]


def resource_blobs(mlir_text: str) -> dict[str, bytes]:
    """The raw little-endian bytes of every `dense_resource` blob in module text, by key (MLIR's Python bindings
    cannot read a blob; the printed module holds them). Found with str.find, not a regex: a 1 GB module's blobs
    (SmolLM2) in 2 s instead of 5."""
    blobs: dict[str, bytes] = {}
    position = mlir_text.rfind("{-#")
    while position >= 0:
        start = mlir_text.find(': "0x', position)
        if start < 0:
            break
        key = mlir_text[mlir_text.rfind("\n", 0, start) + 1 : start].strip()
        end = mlir_text.find('"', start + 5)
        blobs[key] = bytes.fromhex(mlir_text[start + 5 : end])[_BLOB_HEADER_BYTES:]
        position = end
    return blobs


def externalize(mlir_text: str, *, scope: str = SCOPE, min_bytes: int = DEFAULT_MIN_BYTES) -> Externalized:
    """Replace every constant of at least `min_bytes` with a `scope`-scoped parameter global."""
    blobs = resource_blobs(mlir_text)
    moved: dict[str, bytes] = {}
    globals_: dict[str, str] = {}

    def replace(match: re.Match[str]) -> str:
        key = match["key"]
        tensor = re.sub(r"([x<])[su]i(\d+)>", r"\1i\2>", match["tensor"])  # builtin tensors are signless
        data = blobs.get(key)
        if data is None or len(data) < min_bytes:
            return match[0]
        moved[key] = data
        globals_[key] = f'  util.global private @{key} = #stream.parameter.named<"{scope}"::"{key}"> : {tensor}'
        loaded, indent = f"%effc_param_{match['result'][1:]}", match["indent"]
        return (
            f"{indent}{loaded} = util.global.load @{key} : {tensor}\n"
            f"{indent}{match['result']} = torch_c.from_builtin_tensor {loaded} : {tensor} -> {match['vtensor']}"
        )

    text = _LITERAL.sub(replace, mlir_text)
    if not moved:
        return Externalized(mlir_text, {})
    kept = [m[0].strip().rstrip(",") for m in _BLOB.finditer(text) if m["key"] not in moved]
    text = _RESOURCES.sub("", text).rstrip() + "\n"
    if kept:
        text += "{-#\n  dialect_resources: {\n    builtin: {\n      " + ",\n      ".join(kept) + "\n    }\n  }\n#-}\n"
    header = re.search(r"^module\b[^\n]*\{\n", text, re.MULTILINE)
    if header is None:
        raise EffcError("cannot externalize parameters: the MLIR text has no top-level 'module {'")
    text = text[: header.end()] + "\n".join(globals_.values()) + "\n" + text[header.end() :]
    return Externalized(text, moved)


def write_archive(parameters: dict[str, bytes], path: str | Path) -> Path:
    """Write `parameters` as an IREE parameter archive, atomically."""
    import iree.runtime as rt

    index = rt.ParameterIndex()
    for key, data in parameters.items():
        index.add_buffer(key, data)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.partial")
    try:
        index.create_archive_file(str(tmp))
        tmp.replace(target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise EffcError(f"cannot write parameter archive '{target}': {err.strerror or err}") from None
    return target


def named_tensors(module: Any) -> dict[str, Any]:
    """Every parameter and buffer of a torch module, by name: what the FX importer can turn into a weight."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def named_tensor_bytes(module: Any) -> dict[str, bytes]:
    """The raw bytes of every parameter and buffer of a torch module, by name (what an externalized weight holds)."""
    import torch

    return {
        name: t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        for name, t in named_tensors(module).items()
    }


def restore_tensors(module: Any, tensors: Mapping[str, bytes]) -> None:
    """Overwrite the named parameters and buffers of a torch module with raw bytes (`named_tensor_bytes`'s)."""
    import torch

    named = named_tensors(module)
    with torch.no_grad():
        for name, data in tensors.items():
            target = named[name]
            target.copy_(torch.frombuffer(bytearray(data), dtype=target.dtype).reshape(target.shape))


def archive_sources(archive: str | Path, tensors: Mapping[str, bytes]) -> tuple[dict[str, str], list[str]]:
    """For each key of `archive`, the name of a tensor in `tensors` with the same bytes; and the keys with none.

    The FX importer names an externalized weight by its shape and a counter, not by the module's attribute.
    With this map, a machine that builds the same architecture (its own weights, same names) can write an
    archive the compiled module accepts, without the original weights travelling (`write_archive`).
    """
    import iree.runtime as rt

    index = rt.ParameterIndex()
    index.load(str(archive))
    by_bytes: dict[bytes, str] = {}
    for name, data in tensors.items():
        by_bytes.setdefault(data, name)
    names, missing = {}, []
    for key, entry in index.items():
        name = by_bytes.get(bytes(entry.file_view))
        if name is None:
            missing.append(key)
        else:
            names[key] = name
    return names, missing


def archive_fingerprint(archive: str | Path) -> str:
    """A hash of `archive`'s keys and bytes: two modules can share one archive only where it is the same."""
    import hashlib

    import iree.runtime as rt

    index = rt.ParameterIndex()
    index.load(str(archive))
    digest = hashlib.sha256()
    for key, entry in sorted(index.items(), key=lambda item: item[0]):
        digest.update(key.encode() + b"\0" + entry.length.to_bytes(8, "little"))
        digest.update(bytes(entry.file_view))
    return digest.hexdigest()


def write_splat_archive(source: str | Path, target: str | Path) -> Path:
    """An archive with `source`'s keys and sizes but every byte zero: a few KB that stands in for the weights.

    For timing a module where its weights can't travel. Zero is also a valid value for integer buffers
    externalized alongside the weights (position ids), so the module runs without faulting; note that
    kernels see zero weights. (IREE 3.13's `--iree-parameter-splat` wrote an archive with no entries for
    these modules.)
    """
    import iree.runtime as rt

    index = rt.ParameterIndex()
    index.load(str(source))
    splat = rt.ParameterIndex()
    for key, entry in index.items():
        splat.add_splat(key, b"\0", entry.length)
    target = Path(target)
    splat.create_archive_file(str(target))
    return target


def load_provider(path: str | Path) -> object:
    """An IREE parameter provider for the archive at `path` (raises EffcError if it can't be read)."""
    import iree.runtime as rt

    index = rt.ParameterIndex()
    try:
        index.load(str(path))
    except (RuntimeError, ValueError, OSError) as err:
        raise EffcError(f"cannot read parameter archive '{path}': {str(err).splitlines()[0]}") from None
    return index.create_provider(scope=SCOPE)
