"""The carbon data effc-carbon computes with: grid intensities, ACT fab factors and device bills of materials.

The numbers live in versioned JSON files under `passes/data/carbon/`, every value with its source, so a
carbon figure can say where each input came from and the tables can be updated without touching code.
Loading checks each file completely and reports the first problem as one line naming the file and the
entry, because a silently wrong factor would make every downstream CO2e figure wrong.
Device specs (TDP, memory capacity, peak rates) stay in `hardware.json`; `devices.json` only adds what
embodied carbon needs, keyed by the same ids.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from effc.compiler.errors import EffcError

CARBON_DIR = Path(__file__).parent / "data" / "carbon"
GRID_JSON = CARBON_DIR / "grid.json"
FAB_JSON = CARBON_DIR / "fab.json"
DEVICES_JSON = CARBON_DIR / "devices.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class GridIntensity:
    """Carbon intensity of the electricity a device runs on."""

    key: str
    name: str
    g_per_kwh: float
    kind: Literal["region", "source", "given"]
    source: str
    year: int | None = None
    iso_code: str = ""
    alpha2: str = ""


@dataclass(frozen=True)
class GridTable:
    """grid.json: regions (countries and aggregates) and generation sources."""

    version: str
    regions: dict[str, GridIntensity]
    sources: dict[str, GridIntensity]

    def lookup(self, text: str) -> GridIntensity:
        """A region (ISO alpha-3 or alpha-2 code, English name), a source, or a number in g CO2e/kWh."""
        try:
            value = float(text)
        except ValueError:
            pass
        else:
            if not math.isfinite(value) or value < 0:
                raise EffcError(f"grid intensity must be a non-negative number of g CO2e/kWh, got {text}")
            return GridIntensity(text, f"{value:g} g CO2e/kWh", value, "given", "given by the user")
        aliases = self._aliases()
        found = aliases.get(text.strip().lower())
        if found is not None:
            return found
        close = difflib.get_close_matches(text.lower(), list(aliases), n=3, cutoff=0.6)
        labels = list(dict.fromkeys(_label(aliases[c]) for c in close))
        hint = f"; did you mean {' or '.join(labels)}?" if labels else ""
        raise EffcError(
            f"unknown grid region '{text}'{hint} (use an ISO country code such as FRA or US, world, europe, "
            f"a source: {', '.join(self.sources)}, or a number in g CO2e/kWh; see {GRID_JSON.name})"
        )

    def _aliases(self) -> dict[str, GridIntensity]:
        aliases: dict[str, GridIntensity] = {}
        for key, entry in self.regions.items():
            for alias in (key, entry.name, entry.alpha2):
                if alias:
                    aliases[alias.lower()] = entry
        aliases |= {key.lower(): entry for key, entry in self.sources.items()}
        return aliases


def _label(entry: GridIntensity) -> str:
    return f"{entry.name} ({entry.key})" if entry.kind == "region" and entry.name != entry.key else entry.key


@dataclass(frozen=True)
class LogicNode:
    """One process node of ACT's logic table; `gpa` is ACT's default GPA97 (mean of GPA95 and GPA99)."""

    node: str
    epa_kwh_per_cm2: float
    gpa_g_per_cm2: float
    mpa_g_per_cm2: float
    source: str


@dataclass(frozen=True)
class FabData:
    """fab.json: ACT's fab yield, packaging footprint, logic nodes and memory per-GB factors."""

    version: str
    fab_yield: float
    package_g_per_ic: float
    fab_grid: str
    logic: dict[str, LogicNode]
    memory_g_per_gb: dict[str, float]
    sources: dict[str, str]


@dataclass(frozen=True)
class Die:
    name: str
    count: int
    area_cm2: float
    node: str
    source: str


@dataclass(frozen=True)
class DeviceBom:
    """devices.json: what embodied carbon needs beyond hardware.json, for one device id."""

    id: str
    boundary: str
    dies: tuple[Die, ...]
    memory_kind: str
    ics: int
    package_tdp_w: float | None
    load_fraction: float
    sources: dict[str, str]


def load_grid(path: Path = GRID_JSON) -> GridTable:
    """grid.json, validated (cached per path)."""
    return _load_grid(path)


def load_fab(path: Path = FAB_JSON) -> FabData:
    """fab.json, validated (cached per path)."""
    return _load_fab(path)


@dataclass(frozen=True)
class DeviceTable:
    """devices.json: bills of materials by hardware.json id."""

    version: str
    devices: dict[str, DeviceBom]


def load_devices(path: Path = DEVICES_JSON, fab_path: Path = FAB_JSON) -> DeviceTable:
    """devices.json, validated against fab.json's nodes and memory kinds (cached per path)."""
    return _load_devices(path, fab_path)


def device_bom(device_id: str) -> DeviceBom:
    """The bill of materials of `device_id`; an id missing from devices.json is a one-line error."""
    devices = load_devices().devices
    if device_id not in devices:
        close = difflib.get_close_matches(device_id, list(devices), n=3, cutoff=0.4)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise EffcError(
            f"no embodied-carbon data for hardware '{device_id}'{hint} (devices.json has: {', '.join(devices)})"
        )
    return devices[device_id]


@functools.cache
def _load_grid(path: Path) -> GridTable:
    table = _read_table(path)
    regions = {}
    for key, entry in _section(table, "regions", path).items():
        where = f"regions.{key}"
        regions[key] = GridIntensity(
            key=key,
            name=_text(entry, "name", where, path),
            g_per_kwh=_number(entry, "g_per_kwh", where, path),
            kind="region",
            source=_text(entry, "source", where, path),
            year=int(_number(entry, "year", where, path)),
            iso_code=key if len(key) == 3 and key.isupper() else "",
            alpha2=_text(entry, "alpha2", where, path, required=False),
        )
    sources = {
        key: GridIntensity(
            key=key,
            name=key,
            g_per_kwh=_number(entry, "g_per_kwh", f"sources.{key}", path),
            kind="source",
            source=_text(entry, "source", f"sources.{key}", path),
        )
        for key, entry in _section(table, "sources", path).items()
    }
    return GridTable(str(table["version"]), regions, sources)


@functools.cache
def _load_fab(path: Path) -> FabData:
    table = _read_table(path)
    logic = {}
    for node, entry in _section(table, "logic", path).items():
        where = f"logic.{node}"
        gpa95 = _number(entry, "gpa95_g_per_cm2", where, path)
        gpa99 = _number(entry, "gpa99_g_per_cm2", where, path)
        logic[node] = LogicNode(
            node=node,
            epa_kwh_per_cm2=_number(entry, "epa_kwh_per_cm2", where, path),
            gpa_g_per_cm2=(gpa95 + gpa99) / 2,
            mpa_g_per_cm2=_number(entry, "mpa_g_per_cm2", where, path),
            source=_text(entry, "source", where, path),
        )
    memory = _section(table, "memory", path)
    fab_yield = _sourced_number(table, "yield", path)
    if not 0 < fab_yield <= 1:
        raise EffcError(f"{path}: yield.value is {fab_yield}; a fab yield is in (0, 1]")
    return FabData(
        version=str(table["version"]),
        fab_yield=fab_yield,
        package_g_per_ic=_sourced_number(table, "package_g_per_ic", path),
        fab_grid=_text(_section(table, "fab_grid", path), "value", "fab_grid", path),
        logic=logic,
        memory_g_per_gb={k: _number(e, "g_per_gb", f"memory.{k}", path) for k, e in memory.items()},
        sources={
            "yield": _text(table["yield"], "source", "yield", path),
            "package_g_per_ic": _text(table["package_g_per_ic"], "source", "package_g_per_ic", path),
            "fab_grid": _text(table["fab_grid"], "source", "fab_grid", path),
        }
        | {f"memory.{k}": _text(e, "source", f"memory.{k}", path) for k, e in memory.items()},
    )


@functools.cache
def _load_devices(path: Path, fab_path: Path) -> DeviceTable:
    fab = _load_fab(fab_path)
    table = _read_table(path)
    devices = {}
    for device_id, entry in _section(table, "devices", path).items():
        where = f"devices.{device_id}"
        dies = []
        for i, die in enumerate(_list(entry, "dies", where, path)):
            die_where = f"{where}.dies[{i}]"
            node = _text(die, "node", die_where, path)
            if node not in fab.logic:
                raise EffcError(f"{path}: {die_where}.node '{node}' is not a node of fab.json ({', '.join(fab.logic)})")
            dies.append(
                Die(
                    name=_text(die, "name", die_where, path),
                    count=int(_number(die, "count", die_where, path)),
                    area_cm2=_number(die, "area_mm2", die_where, path) / 100,
                    node=node,
                    source=_text(die, "source", die_where, path),
                )
            )
        memory = _section(entry, "memory", path, where)
        kind = _text(memory, "kind", f"{where}.memory", path)
        if kind not in fab.memory_g_per_gb:
            raise EffcError(
                f"{path}: {where}.memory.kind '{kind}' is not a memory row of fab.json "
                f"({', '.join(fab.memory_g_per_gb)})"
            )
        optional = ("package_tdp_w",) if "package_tdp_w" in entry else ()
        devices[device_id] = DeviceBom(
            id=device_id,
            boundary=_text(entry, "boundary", where, path),
            dies=tuple(dies),
            memory_kind=kind,
            ics=int(_sourced_number(entry, "ics", path, where)),
            package_tdp_w=_sourced_number(entry, "package_tdp_w", path, where) if optional else None,
            load_fraction=_sourced_number(entry, "load_fraction", path, where),
            sources={f"die {d.name}": d.source for d in dies}
            | {"memory": _text(memory, "source", f"{where}.memory", path)}
            | {key: _text(entry[key], "source", f"{where}.{key}", path) for key in ("ics", "load_fraction", *optional)},
        )
    return DeviceTable(str(table["version"]), devices)


# --- validation: every failure names the file and the entry, on one line ---------------------------------


def _read_table(path: Path) -> dict[str, Any]:
    try:
        table = json.loads(path.read_text())
    except OSError as err:
        raise EffcError(f"cannot read carbon data file {path}: {err.strerror}; reinstall effc") from None
    except json.JSONDecodeError as err:
        raise EffcError(
            f"{path}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}; fix the file or reinstall effc"
        ) from None
    if not isinstance(table, dict):
        raise EffcError(f"{path}: expected a JSON object at the top level")
    if table.get("schema_version") != SCHEMA_VERSION:
        raise EffcError(f"{path}: schema_version {table.get('schema_version')} is not {SCHEMA_VERSION}; reinstall effc")
    if not isinstance(table.get("version"), str) or not table["version"]:
        raise EffcError(f"{path}: no 'version' string; every carbon data file says which data release it is")
    return table


def _section(table: dict[str, Any], key: str, path: Path, where: str = "") -> dict[str, Any]:
    name = f"{where}.{key}" if where else key
    value = table.get(key)
    if not isinstance(value, dict) or not value:
        raise EffcError(f"{path}: '{name}' is missing or not a non-empty object")
    return value


def _list(entry: Any, key: str, where: str, path: Path) -> list[Any]:
    value = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(value, list) or not value:
        raise EffcError(f"{path}: {where}.{key} is missing or not a non-empty list")
    return value


def _number(entry: Any, key: str, where: str, path: Path) -> float:
    if not isinstance(entry, dict) or key not in entry:
        raise EffcError(f"{path}: {where} has no '{key}'")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EffcError(f"{path}: {where}.{key} is {json.dumps(value)}, not a number")
    if value < 0:
        raise EffcError(f"{path}: {where}.{key} is {value}; it must not be negative")
    return float(value)


def _text(entry: Any, key: str, where: str, path: Path, *, required: bool = True) -> str:
    value = entry.get(key) if isinstance(entry, dict) else None
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        reason = " (every value must say where it came from)" if key == "source" else ""
        raise EffcError(f"{path}: {where} has no '{key}' text{reason}")
    return value


def _sourced_number(entry: dict[str, Any], key: str, path: Path, where: str = "") -> float:
    """A `{"value": number, "source": text}` entry's value, after checking it has a source."""
    name = f"{where}.{key}" if where else key
    item = entry.get(key)
    _text(item, "source", name, path)
    return _number(item, "value", name, path)
