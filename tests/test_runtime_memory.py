"""effc's CPU runs keep freed memory, so IREE's per-call transient block is not page-faulted in on every call."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import effc
from effc.runtime.runner import RETAINED_BLOCK_BYTES, tool_environment

BLOCK_BYTES = 256 << 20  # well over glibc's largest adaptive mmap threshold (32 MiB)
PAGES = BLOCK_BYTES // os.sysconf("SC_PAGE_SIZE")

# Allocates a block with malloc, writes it and frees it, twice; prints the page faults of the second time.
_SECOND_ALLOCATION_FAULTS = f"""
import ctypes, resource, sys
from effc.runtime.runner import retain_freed_memory
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "retain":
    assert retain_freed_memory()
def touch_block():
    block = libc.malloc({BLOCK_BYTES})
    ctypes.memset(block, 1, {BLOCK_BYTES})
    libc.free(block)
touch_block()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch_block()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")


def _second_allocation_faults(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", _SECOND_ALLOCATION_FAULTS, mode], capture_output=True, text=True, check=True
    )
    return int(result.stdout)


@glibc_only
def test_freed_memory_is_reused_without_page_faults() -> None:
    assert _second_allocation_faults("default") > PAGES // 2  # unmapped at free, faulted in again
    assert _second_allocation_faults("retain") < PAGES // 20


def test_tool_environment_keeps_the_callers_tunables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert tool_environment()["GLIBC_TUNABLES"] == (
        f"glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold={RETAINED_BLOCK_BYTES}"
        f":glibc.malloc.trim_threshold={RETAINED_BLOCK_BYTES}"
    )


_SCORE_PAGES = 4 * 16 * 512 * 512 * 4 // os.sysconf("SC_PAGE_SIZE")  # the block's f32 attention scores, 64 MiB

# Loads the module with effc's runtime, calls it once, then prints the page faults per call of four more calls.
_FAULTS_PER_CALL = """
import resource, sys
import numpy as np
from effc.runtime.runner import load_vmfb
main = load_vmfb(__import__("pathlib").Path(sys.argv[1])).modules.module["main"]
x = np.load(sys.argv[2])
main(x)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    main(x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)
"""


@pytest.fixture(scope="module")
def attention_block(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """bench/perf's attention block, narrowed to D=256: its decomposed attention's transients exceed 64 MiB."""
    from effc.bench.perf.workloads import AttentionBlock

    torch.manual_seed(0)
    x = torch.randn(4, 512, 256)
    work = tmp_path_factory.mktemp("block")
    vmfb = effc.compile(AttentionBlock(256, 16).eval(), (x,), attention="decomposed").save(work / "block.vmfb")
    np.save(work / "x.npy", x.numpy())
    return vmfb, work / "x.npy"


def _benchmark_faults_per_call(vmfb: Path, x: Path, env: dict[str, str] | None) -> float:
    """Page faults per call of iree-benchmark-module: the difference between 1 and 4 calls."""
    from iree.runtime.benchmark import benchmark_exe

    faults = []
    for calls in (1, 4):
        command = [benchmark_exe(), f"--module={vmfb}", "--function=main", f"--input=@{x}"]
        process = subprocess.Popen([*command, f"--benchmark_min_time={calls}x"], stdout=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        faults.append(usage.ru_minflt)
    return (faults[1] - faults[0]) / 3


@glibc_only
def test_effc_runtime_calls_do_not_fault_their_transients_in_again(attention_block: tuple[Path, Path]) -> None:
    vmfb, x = attention_block
    default = {**os.environ, "GLIBC_TUNABLES": ""}
    assert _benchmark_faults_per_call(vmfb, x, default) > _SCORE_PAGES  # every call maps its transients afresh
    faults = subprocess.run(
        [sys.executable, "-c", _FAULTS_PER_CALL, str(vmfb), str(x)], capture_output=True, text=True, check=True
    )
    assert float(faults.stdout) < _SCORE_PAGES / 100


@glibc_only
def test_iree_benchmark_module_runs_under_the_same_heap_policy(attention_block: tuple[Path, Path]) -> None:
    """Most of the faults go; glibc still unmaps some (12K of 36K pages per call on the 2-core CPU, NOTES.md)."""
    vmfb, x = attention_block
    default = _benchmark_faults_per_call(vmfb, x, {**os.environ, "GLIBC_TUNABLES": ""})
    assert _benchmark_faults_per_call(vmfb, x, tool_environment()) < default / 2
