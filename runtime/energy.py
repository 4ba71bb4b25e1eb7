"""Energy of one inference: measured with a hardware counter when one is readable, modeled otherwise.

Meters read cumulative energy counters, never integrate power samples: NVML's
`nvmlDeviceGetTotalEnergyConsumption` (mJ since driver load, Volta and newer) on NVIDIA GPUs, and RAPL's
package domains under `/sys/class/powercap` on CPUs. Both update coarsely (NVML every ~20-100 ms; nvidia-smi's
power reading samples only ~25% of runtime on A100/H100, arXiv 2312.02741), so `measure` runs windows of at
least a second and repeats them. RAPL counters wrap at `max_energy_range_uj` and are root-only on most
kernels since the 2020 PLATYPUS fix; a meter that cannot be opened says why, and the caller falls back
to the modeled figure. Every `Measurement` carries its `source`, so no number is mistaken for another kind.
`pynvml` (package `nvidia-ml-py`) is imported only when an NVML meter is opened: it is not a dependency.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

Source = Literal["measured-nvml", "measured-rapl", "modeled"]
POWERCAP = Path("/sys/class/powercap")
MIN_WINDOW_S = 1.0
WINDOWS = 3
# How often a window polls its counter: RAPL wraps after minutes, NVML is cheap but not free to read.
POLL_S = 0.1


class MeterUnavailable(Exception):
    """No counter can be read here; `str()` says why, for the fallback note."""


@dataclass(frozen=True)
class Measurement:
    """Energy and time per inference, and whether they were measured (and by which counter) or modeled."""

    energy_j: float
    time_s: float
    source: Source
    device: str
    calls: int = 0
    window_energy_j: tuple[float, ...] = ()
    note: str = ""

    @property
    def power_w(self) -> float:
        return self.energy_j / self.time_s if self.time_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"power_w": self.power_w}


class Meter(Protocol):
    """A cumulative energy counter."""

    source: Source
    device: str

    def read_j(self) -> float:
        """Joules since an arbitrary origin; only differences mean anything."""
        ...

    def close(self) -> None: ...


def modeled(time_s: float, power_w: float, device: str, note: str) -> Measurement:
    """The fallback: average power times time, labelled `modeled` with the assumption in `note`."""
    return Measurement(power_w * time_s, time_s, "modeled", device, note=note)


class NvmlMeter:
    """The board energy counter of one NVIDIA GPU (GPU + HBM + board; no host, no cooling)."""

    source: Source = "measured-nvml"

    def __init__(self, index: int = 0) -> None:
        try:
            import pynvml
        except ImportError:
            raise MeterUnavailable("pynvml is not installed (pip install nvidia-ml-py)") from None
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as err:
            raise MeterUnavailable(f"NVML did not initialise: {err}") from None
        try:
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(self._handle)
            self.device = f"{name.decode() if isinstance(name, bytes) else name} (GPU {index})"
            self.read_j()
        except pynvml.NVMLError as err:
            pynvml.nvmlShutdown()
            raise MeterUnavailable(f"GPU {index} has no readable NVML energy counter: {err}") from None

    def read_j(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1e3

    def close(self) -> None:
        self._nvml.nvmlShutdown()


@dataclass
class _RaplDomain:
    name: str
    energy_file: Path
    max_range_uj: int
    last_uj: int


class RaplMeter:
    """The package domains of Intel/AMD RAPL under powercap, summed, with counter wraparound undone.

    Only top-level `package-*` zones are read: psys contains them and core/uncore/dram are inside or
    beside them, so summing other domains would double count. The reading covers whole sockets, other
    processes included.
    """

    source: Source = "measured-rapl"

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise MeterUnavailable(f"{root} does not exist (no RAPL powercap driver, e.g. in a VM)")
        self._domains = []
        for zone in sorted(root.glob("intel-rapl:*")):
            name = _read_text(zone / "name") if zone.name.count(":") == 1 else ""
            if name.startswith("package"):
                energy = zone / "energy_uj"
                max_range = _read_int(zone / "max_energy_range_uj")
                self._domains.append(_RaplDomain(name, energy, max_range, _read_int(energy)))
        if not self._domains:
            raise MeterUnavailable(f"{root} has no RAPL package domain (intel-rapl:N with name package-N)")
        self.device = f"RAPL {', '.join(d.name for d in self._domains)}"
        self._total_uj = 0

    def read_j(self) -> float:
        for domain in self._domains:
            now = _read_int(domain.energy_file)
            self._total_uj += rapl_delta_uj(domain.last_uj, now, domain.max_range_uj)
            domain.last_uj = now
        return self._total_uj / 1e6

    def close(self) -> None:
        """Nothing to release: sysfs files are opened per read."""


def rapl_delta_uj(before: int, after: int, max_range_uj: int) -> int:
    """Energy between two readings of a RAPL counter that wraps to 0 after `max_range_uj`.

    Correct for at most one wrap, so the counter must be read more often than it wraps (minutes at full
    load); `measure` polls it every `POLL_S`.
    """
    return after - before if after >= before else max_range_uj - before + after


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as err:
        raise MeterUnavailable(
            f"cannot read {path}: {err.strerror or err} (RAPL is root-only since the 2020 PLATYPUS fix; "
            "run as root or make energy_uj readable)"
        ) from None


def _read_int(path: Path) -> int:
    text = _read_text(path)
    try:
        return int(text)
    except ValueError:
        raise MeterUnavailable(f"{path} holds '{text}', not a counter value") from None


def open_meter(kind: Literal["gpu", "cpu"], *, gpu_index: int = 0, powercap: Path | None = None) -> Meter:
    """NVML for a GPU, RAPL (under `powercap`, default `POWERCAP`) for the host CPU.

    `MeterUnavailable` says why the counter cannot be read, for the modeled fallback's note.
    """
    return NvmlMeter(gpu_index) if kind == "gpu" else RaplMeter(powercap or POWERCAP)


def measure(
    run_once: Callable[[], object],
    meter: Meter,
    *,
    min_window_s: float = MIN_WINDOW_S,
    windows: int = WINDOWS,
    warmup_calls: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """Energy and time per call of `run_once` (which must return only when the work is done).

    Each window repeats calls until `min_window_s` has passed, so coarse counters advance many times;
    the result is the median over `windows` windows, and each window's figure is kept for the spread.
    Inside a window the counter is polled every `POLL_S`, not after every call (a microsecond model would
    otherwise time the meter), which is still far more often than RAPL wraps.
    """
    for _ in range(warmup_calls):
        run_once()
    per_call_j, per_call_s, calls = [], [], 0
    for _ in range(windows):
        start_j, n = meter.read_j(), 0
        start_s = polled_s = clock()
        while True:
            run_once()
            n += 1
            end_s = clock()
            if end_s - start_s >= min_window_s:
                break
            if end_s - polled_s >= POLL_S:
                meter.read_j()
                polled_s = end_s
        end_j = meter.read_j()
        if end_j <= start_j:
            raise MeterUnavailable(
                f"{meter.device}: the energy counter did not advance in a {end_s - start_s:.2f} s window"
            )
        per_call_j.append((end_j - start_j) / n)
        per_call_s.append((end_s - start_s) / n)
        calls += n
    return Measurement(
        energy_j=statistics.median(per_call_j),
        time_s=statistics.median(per_call_s),
        source=meter.source,
        device=meter.device,
        calls=calls,
        window_energy_j=tuple(per_call_j),
        note=f"median of {windows} windows of >= {min_window_s:g} s ({calls} calls)",
    )
