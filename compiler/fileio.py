"""effc's files. Atomic output files: write to a temporary name beside the target, then rename.

A failed compile or an interrupted write therefore never leaves a half-written .vmfb or .mlir, and
an existing file at the target path stays intact until the new one is complete. effc's own JSON
files (CHAI plans, int8 smoothing) carry a format name and version, checked on reading.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

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


def read_text(path: str | Path, kind: str) -> str:
    """A file's text; a file that cannot be read is one line naming it as `kind` and why."""
    try:
        return Path(path).read_text()
    except OSError as err:
        raise EffcError(f"cannot read {kind} '{path}': {err.strerror}") from None


def versioned_json(text: str, where: str, *, format_name: str, version: int, kind: str, maker: str) -> dict[str, Any]:
    """The body of an effc JSON file of `format_name` and `version`; anything else is one line naming `where`,
    what the file should be (`kind`) and the command that makes one (`maker`)."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as err:
        raise EffcError(f"{where}: not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(body, dict) or body.get("format") != format_name:
        raise EffcError(f'{where}: not an effc {kind} (no "format": "{format_name}"); make one with \'{maker}\'')
    if body.get("version") != version:
        raise EffcError(
            f"{where}: {kind} version {body.get('version')} is not supported (this effc reads version {version}); "
            f"make it again with '{maker}'"
        )
    return body


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
