"""Roofline parameters of the devices effc can profile for, read from `passes/data/hardware.json`.

The numbers live in a versioned JSON file, each with its source (datasheet or measurement), so that a
profile can say where its peak FLOP/s and bandwidth came from and the table can be updated without
touching code. Device ids (`host-cpu`, `a100`, `h100-sxm`, `h200-sxm`) are stable: other data files,
such as the embodied-carbon table, key on them.

`host-cpu` is whatever CPU effc runs on, and CPUs differ (two VMs both called "AMD EPYC" differed 3x in f32
matmuls): its entry holds one measurement per kind of CPU (vector ISA, bf16 dot products), the first in the entry
itself and the others under `other_cpus`, and the one that matches this machine's CPU is used.
"""

from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effc.compiler.errors import EffcError
from effc.compiler.host_cpu import has_bf16_dot, vector_isa

HARDWARE_JSON = Path(__file__).parent / "data" / "hardware.json"
SCHEMA_VERSION = 1
# The dtype keys every device entry gives a peak for.
PEAK_DTYPES = ("f64", "f32", "tf32", "bf16", "f16", "int8")


@dataclass(frozen=True)
class Hardware:
    """One device: dense peak FLOP/s per dtype, memory bandwidth and power, each value with its source."""

    id: str
    name: str
    kind: str
    peak_flops: dict[str, float]
    sparse_flops: dict[str, float]
    memory_bandwidth: float
    memory_bytes: float
    tdp_w: float
    sources: dict[str, str]

    def peak(self, dtype: str) -> float:
        """Dense peak for a key of `PEAK_DTYPES`."""
        return self.peak_flops[dtype]


def read_table(path: Path = HARDWARE_JSON) -> dict[str, Any]:
    """The raw JSON table, checked for its schema version (also used by `bench/measure_host.py`)."""
    table = json.loads(path.read_text())
    if table.get("schema_version") != SCHEMA_VERSION:
        raise EffcError(
            f"{path}: hardware table schema_version {table.get('schema_version')} is not {SCHEMA_VERSION}; "
            "reinstall effc or regenerate the file"
        )
    return table


def hardware_ids() -> list[str]:
    """Every device id in the table, in file order."""
    return list(_devices())


def load_hardware(name: str) -> Hardware:
    """The device `name`; an unknown name is a one-line error listing close matches and all ids."""
    devices = _devices()
    if name not in devices:
        close = difflib.get_close_matches(name, list(devices), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise EffcError(f"unknown hardware target '{name}'{hint} (known: {', '.join(devices)})")
    here = _this_cpu()
    return _hardware(name, here["vector_isa"], here["bf16_dot"])


def _this_cpu() -> dict[str, Any]:
    """This machine's CPU features as hardware.json's `cpu_features` records them (bf16_dot None: unknown)."""
    return {"vector_isa": vector_isa(), "bf16_dot": has_bf16_dot()}


def same_cpu(features: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two `cpu_features` describe the same kind of CPU: the same vector ISA and bf16 support."""
    return all(features[key] == other[key] for key in ("vector_isa", "bf16_dot"))


def measurements(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The CPUs a device entry was measured on: the entry itself, then its `other_cpus` (host-cpu only)."""
    return [entry, *entry.get("other_cpus", [])]


def _matching(entry: dict[str, Any], here: dict[str, Any]) -> dict[str, Any] | None:
    """The measurement of `entry` taken on a CPU like `here`; None where none is, or the entry has no CPU features."""
    return next(
        (m for m in measurements(entry) if "cpu_features" in m and same_cpu(m["cpu_features"], here)),
        None,
    )


def host_cpu_mismatch(name: str = "host-cpu") -> str | None:
    """Why entry `name`'s peaks may not hold on this machine: no measurement was taken on a CPU with this one's
    vector ISA and bf16 support. None where one was, or where this CPU's features are unknown."""
    entry = _devices()[name]
    here = _this_cpu()
    if "cpu_features" not in entry or here["bf16_dot"] is None or _matching(entry, here) is not None:
        return None

    def describe(cpu: dict[str, Any]) -> str:
        return f"{cpu['vector_isa']}, {'with' if cpu['bf16_dot'] else 'no'} bf16"

    measured = "; ".join(describe(m["cpu_features"]) for m in measurements(entry))
    other = "another CPU" if len(measurements(entry)) == 1 else "other CPUs"
    return (
        f"{HARDWARE_JSON.name}'s {name} was measured on {other} ({measured}; this one: {describe(here)}), so its "
        "predicted times are not this machine's: rerun python -m effc.bench.measure_host"
    )


@functools.cache
def _devices() -> dict[str, dict[str, Any]]:
    return dict(read_table()["devices"])


@functools.cache
def _hardware(name: str, isa: str, bf16_dot: bool | None) -> Hardware:
    """Device `name` as measured on a CPU with these features where it was; else its first measurement."""
    device = _devices()[name]
    entry = _matching(device, {"vector_isa": isa, "bf16_dot": bf16_dot}) or device
    flops = entry["peak_flops"]
    missing = [d for d in PEAK_DTYPES if d not in flops]
    if missing:
        raise EffcError(f"{HARDWARE_JSON}: device '{name}' has no peak_flops for {', '.join(missing)}")
    sources = {f"peak_flops.{d}": flops[d]["source"] for d in PEAK_DTYPES}
    sources |= {key: entry[key]["source"] for key in ("memory_bandwidth", "memory_bytes", "tdp_w")}
    return Hardware(
        id=name,
        name=entry["name"],
        kind=device["kind"],
        peak_flops={d: float(flops[d]["dense"]) for d in PEAK_DTYPES},
        sparse_flops={d: float(flops[d]["sparse"]) for d in PEAK_DTYPES if "sparse" in flops[d]},
        memory_bandwidth=float(entry["memory_bandwidth"]["value"]),
        memory_bytes=float(entry["memory_bytes"]["value"]),
        tdp_w=float(entry["tdp_w"]["value"]),
        sources=sources,
    )
