"""Atomic output files: write to a temporary name beside the target, then rename.

A failed compile or an interrupted write therefore never leaves a half-written .vmfb or .mlir, and
an existing file at the target path stays intact until the new one is complete.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from effc.compiler.errors import EffcError


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write `data` to `path` atomically and return the path."""
    target = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise EffcError(f"cannot write '{target}': directory '{directory}' does not exist; create it first")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
