"""Run the lit suite (tests/lit: .mlir files checked with FileCheck) as part of pytest.

ctest runs lit on its own too; this keeps `pytest` alone a complete check.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LIT_DIR = Path(__file__).parent / "lit"


def test_lit_suite_passes() -> None:
    result = subprocess.run(
        # lit has no __main__ (`python -m lit` fails); its console script calls lit.main.main.
        [sys.executable, "-c", "import lit.main; lit.main.main()", str(LIT_DIR), "-v"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"lit failed:\n{result.stdout}\n{result.stderr}"
