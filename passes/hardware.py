"""Roofline parameters of the devices effc can profile for, read from `passes/data/hardware.json`.

The numbers live in a versioned JSON file, each with its source (datasheet or measurement), so that a
profile can say where its peak FLOP/s and bandwidth came from and the table can be updated without
touching code. Device ids (`host-cpu`, `a100`, `h100-sxm`, `h200-sxm`) are stable: other data files,
such as the embodied-carbon table, key on them.
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
    return _hardware(name)


def host_cpu_mismatch(name: str = "host-cpu") -> str | None:
    """Why entry `name`'s peaks may not hold on this machine: they were measured on a CPU with another vector ISA
    or bf16 support (two VMs both called "AMD EPYC" differed 3x in f32). None where they match or it is unknown."""
    features = _devices()[name].get("cpu_features")
    if features is None:
        return None
    here = {"vector_isa": vector_isa(), "bf16_dot": has_bf16_dot()}
    if here["bf16_dot"] is None or all(features[key] == value for key, value in here.items()):
        return None

    def describe(cpu: dict[str, Any]) -> str:
        return f"{cpu['vector_isa']}, {'with' if cpu['bf16_dot'] else 'no'} bf16"

    return (
        f"{HARDWARE_JSON.name}'s {name} was measured on another CPU ({describe(features)}; this one: "
        f"{describe(here)}), so its predicted times are not this machine's: rerun python -m effc.bench.measure_host"
    )


@functools.cache
def _devices() -> dict[str, dict[str, Any]]:
    return dict(read_table()["devices"])


@functools.cache
def _hardware(name: str) -> Hardware:
    entry = _devices()[name]
    flops = entry["peak_flops"]
    missing = [d for d in PEAK_DTYPES if d not in flops]
    if missing:
        raise EffcError(f"{HARDWARE_JSON}: device '{name}' has no peak_flops for {', '.join(missing)}")
    sources = {f"peak_flops.{d}": flops[d]["source"] for d in PEAK_DTYPES}
    sources |= {key: entry[key]["source"] for key in ("memory_bandwidth", "memory_bytes", "tdp_w")}
    return Hardware(
        id=name,
        name=entry["name"],
        kind=entry["kind"],
        peak_flops={d: float(flops[d]["dense"]) for d in PEAK_DTYPES},
        sparse_flops={d: float(flops[d]["sparse"]) for d in PEAK_DTYPES if "sparse" in flops[d]},
        memory_bandwidth=float(entry["memory_bandwidth"]["value"]),
        memory_bytes=float(entry["memory_bytes"]["value"]),
        tdp_w=float(entry["tdp_w"]["value"]),
        sources=sources,
    )
