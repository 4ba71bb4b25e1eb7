"""`effc-carbon`: energy, operational and embodied CO2e, and tCDP per inference, annotated in the IR.

It runs after `effc-profile`, whose roofline time per op (`effc.est_time_s`) it turns into energy with a
power model (device TDP x a load fraction from devices.json), or splits a measured total across ops in
proportion to that time when `measured-energy-j`/`measured-time-s` are given. Then, per inference:

    operational CO2e  = energy x PUE x grid intensity                          (CodeCarbon, ACT OP_CF)
    embodied CO2e     = T / (lifetime x utilization) x E_device                (ACT: T/LT x E_CF)
    E_device          = sum dies (area x CPA(node)) + memory GB x CPS / Y + N_ics x Kr
    CPA               = (CI_fab x EPA + GPA + MPA) / Y                         (ACT, Gupta et al. ISCA'22)
    tCDP              = (operational + embodied) x T                           (arXiv 2305.01831)

The model is a set of small pure functions so each equation can be checked against a hand calculation.
Every number written says whether it was measured or modeled and which data release it came from.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from torch_mlir import ir

from effc.compiler.errors import EffcError
from effc.passes.base import ModulePass, OptionError, PassFailure
from effc.passes.carbon_data import (
    DeviceBom,
    FabData,
    GridIntensity,
    LogicNode,
    device_bom,
    load_devices,
    load_fab,
    load_grid,
)
from effc.passes.hardware import Hardware, load_hardware
from effc.runtime.energy import Measurement, modeled

# ACT's `year` (pint's Julian year): 365.25 days.
SECONDS_PER_YEAR = 365.25 * 86400
JOULES_PER_KWH = 3.6e6

# What effc-profile writes and effc-carbon reads.
PROFILE_TARGET = "effc.profile.target"
PROFILE_TIME = "effc.profile.est_time_s"
PROFILE_SHARE = "effc.profile.class_share"
OP_TIME = "effc.est_time_s"


# --- the ACT-style model ----------------------------------------------------------------------------------


def cpa_g_per_cm2(node: LogicNode, fab_ci_g_per_kwh: float, fab_yield: float) -> float:
    """ACT's carbon per die area: (CI_fab x EPA + GPA + MPA) / Y, in g CO2e/cm2."""
    return (fab_ci_g_per_kwh * node.epa_kwh_per_cm2 + node.gpa_g_per_cm2 + node.mpa_g_per_cm2) / fab_yield


def memory_g(capacity_gb: float, cps_g_per_gb: float, fab_yield: float) -> float:
    """ACT's memory embodied carbon: capacity x CPS / Y (StorageModel divides by yield too)."""
    return capacity_gb * cps_g_per_gb / fab_yield


@dataclasses.dataclass(frozen=True)
class Embodied:
    """A device's embodied carbon by part, in g CO2e."""

    dies_g: float
    memory_g: float
    packaging_g: float
    share: float

    @property
    def total_g(self) -> float:
        return self.dies_g + self.memory_g + self.packaging_g


def device_embodied(bom: DeviceBom, hardware: Hardware, fab: FabData, fab_ci_g_per_kwh: float) -> Embodied:
    """E_device = share x (sum dies area x CPA + N_ics x Kr) + memory; memory is hardware.json's capacity.

    `share` < 1 only for a device that is part of a package (a VM's vCPUs): its TDP over the package's.
    """
    share = min(1.0, hardware.tdp_w / bom.package_tdp_w) if bom.package_tdp_w else 1.0
    dies = sum(
        d.count * d.area_cm2 * cpa_g_per_cm2(fab.logic[d.node], fab_ci_g_per_kwh, fab.fab_yield) for d in bom.dies
    )
    return Embodied(
        dies_g=share * dies,
        memory_g=memory_g(hardware.memory_bytes / 1e9, fab.memory_g_per_gb[bom.memory_kind], fab.fab_yield),
        packaging_g=share * bom.ics * fab.package_g_per_ic,
        share=share,
    )


def operational_g(energy_j: float, ci_g_per_kwh: float, pue: float) -> float:
    """Energy x PUE x grid intensity, in g CO2e."""
    return energy_j / JOULES_PER_KWH * pue * ci_g_per_kwh


def amortized_g(embodied_g: float, time_s: float, lifetime_years: float, utilization: float) -> float:
    """ACT's T/LT share of embodied carbon, where only `utilization` of the lifetime is spent working."""
    return embodied_g * time_s / (lifetime_years * SECONDS_PER_YEAR * utilization)


def tcdp_g_s(total_g: float, time_s: float) -> float:
    """tCDP (arXiv 2305.01831): total CO2e x execution time, in g*s; lower is better."""
    return total_g * time_s


# --- the pass --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CarbonPass(ModulePass):
    name = "effc-carbon"
    description = (
        "Annotate a profiled module (run effc-profile first) with energy and CO2e per op and per "
        "inference: operational CO2e from the grid's intensity, embodied CO2e from an ACT-style model "
        "amortized over the device lifetime, and tCDP. Energy is modeled from the roofline time and the "
        "device's power unless a measured total is given; every figure says which."
    )

    grid: str = dataclasses.field(
        default="world",
        metadata={"help": "grid: ISO country code (FRA, US), world, europe, a source (coal, wind...) or g CO2e/kWh"},
    )
    hardware: str | None = dataclasses.field(
        default=None,
        metadata={"help": "device id of hardware.json; default: the profiled target (must match it)"},
    )
    lifetime: float = dataclasses.field(default=5.0, metadata={"help": "device lifetime in years (LLMCarbon: 5)"})
    utilization: float = dataclasses.field(
        default=1.0,
        metadata={"help": "share of the lifetime the device is busy, in (0, 1] (ACT duty cycle: 1)"},
    )
    pue: float = dataclasses.field(default=1.0, metadata={"help": "datacenter PUE, >= 1 (CodeCarbon default: 1)"})
    measured_energy_j: float | None = dataclasses.field(
        default=None,
        metadata={"help": "measured joules per inference (with measured-time-s); default: modeled"},
    )
    measured_time_s: float | None = dataclasses.field(
        default=None, metadata={"help": "measured seconds per inference, with measured-energy-j"}
    )
    meter: Literal["nvml", "rapl"] = dataclasses.field(
        default="nvml", metadata={"help": "the counter that measured the energy: nvml or rapl"}
    )

    def __post_init__(self) -> None:
        checks = {
            "lifetime": (self.lifetime > 0, "must be a positive number of years"),
            "utilization": (0 < self.utilization <= 1, "must be in (0, 1]"),
            "pue": (self.pue >= 1, "must be >= 1 (1 is an ideal datacenter)"),
        }
        for key, (ok, rule) in checks.items():
            if not ok or not math.isfinite(getattr(self, key)):
                raise OptionError(key, f"effc-carbon: {key} {rule}, got {getattr(self, key)}")
        energy_j, time_s = self.measured_energy_j, self.measured_time_s
        if (energy_j is None) != (time_s is None):
            given = "measured-energy-j" if time_s is None else "measured-time-s"
            raise OptionError(given, "effc-carbon: give measured-energy-j and measured-time-s together")
        if energy_j is not None and time_s is not None and not (energy_j > 0 and time_s > 0):
            raise OptionError("measured-energy-j", "effc-carbon: measured energy and time must be positive")
        try:
            load_grid().lookup(self.grid)
        except EffcError as err:
            raise OptionError("grid", f"effc-carbon: {err.message}") from None
        if self.hardware is not None:
            try:
                load_hardware(self.hardware)
                device_bom(self.hardware)
            except EffcError as err:
                raise OptionError("hardware", f"effc-carbon: {err.message}") from None

    def apply(self, module: ir.Operation) -> None:
        self.annotate(module)

    def annotate(self, module: ir.Operation) -> CarbonResult:
        """Write the carbon attributes on `module` (a profiled `builtin.module`) and return the figures."""
        attrs = module.attributes
        if any(key not in attrs for key in (PROFILE_TARGET, PROFILE_TIME, PROFILE_SHARE)):
            raise PassFailure(
                "effc-carbon needs effc-profile's annotations; run effc-profile{target=...} before it",
                module.location,
            )
        target = ir.StringAttr(attrs[PROFILE_TARGET]).value
        if self.hardware is not None and self.hardware != target:
            raise PassFailure(
                f"effc-carbon{{hardware={self.hardware}}} on a module profiled for {target}: profile for the "
                f"same device (effc-profile{{target={self.hardware}}})",
                module.location,
            )
        profiled_s = _f64(module, PROFILE_TIME)
        shares = ir.DictAttr(attrs[PROFILE_SHARE])
        class_share = {shares[i].name: shares[i].attr.value for i in range(len(shares))}
        result = self.evaluate(target, profiled_s, class_share)
        for op in _profiled_ops(module):
            share = _f64(op, OP_TIME) / profiled_s if profiled_s else 0.0
            op.attributes["effc.energy_j"] = ir.FloatAttr.get_f64(result.energy.energy_j * share)
            op.attributes["effc.co2e_g"] = ir.FloatAttr.get_f64(result.total_g * share)
        for key, value in result.attributes().items():
            attrs[f"effc.carbon.{key}"] = value
        return result

    def evaluate(self, hardware_id: str, profiled_time_s: float, class_share: dict[str, float]) -> CarbonResult:
        """One inference's figures on `hardware_id`, from the profiled time and time share per op class."""
        hardware = load_hardware(hardware_id)
        bom = device_bom(hardware_id)
        fab = load_fab()
        grid = load_grid()
        ci = grid.lookup(self.grid)
        fab_ci = grid.lookup(fab.fab_grid)
        if self.measured_energy_j is not None and self.measured_time_s is not None:
            energy = Measurement(self.measured_energy_j, self.measured_time_s, f"measured-{self.meter}", hardware.name)
        else:
            energy = modeled(
                profiled_time_s,
                hardware.tdp_w * bom.load_fraction,
                hardware.name,
                f"roofline time x {bom.load_fraction:g} x TDP {hardware.tdp_w:g} W",
            )
        embodied = device_embodied(bom, hardware, fab, fab_ci.g_per_kwh)
        op_g = operational_g(energy.energy_j, ci.g_per_kwh, self.pue)
        emb_g = amortized_g(embodied.total_g, energy.time_s, self.lifetime, self.utilization)
        return CarbonResult(
            pass_=self,
            hardware=hardware,
            bom=bom,
            grid=ci,
            fab_grid=fab_ci,
            energy=energy,
            embodied=embodied,
            operational_g=op_g,
            embodied_g=emb_g,
            class_share=dict(sorted(class_share.items(), key=lambda kv: -kv[1])),
            data_version=f"grid {grid.version}, fab {fab.version}, devices {load_devices().version}",
        )


@dataclasses.dataclass(frozen=True)
class CarbonResult:
    """One inference's carbon figures; `attributes()` is what the pass writes on the module."""

    pass_: CarbonPass
    hardware: Hardware
    bom: DeviceBom
    grid: GridIntensity
    fab_grid: GridIntensity
    energy: Measurement
    embodied: Embodied
    operational_g: float
    embodied_g: float
    class_share: dict[str, float]
    data_version: str

    @property
    def total_g(self) -> float:
        return self.operational_g + self.embodied_g

    @property
    def tcdp_g_s(self) -> float:
        return tcdp_g_s(self.total_g, self.energy.time_s)

    def attributes(self) -> dict[str, ir.Attribute]:
        """The module attributes `effc.carbon.*` (keys without the prefix)."""
        f64, text = ir.FloatAttr.get_f64, ir.StringAttr.get
        return {
            "hardware": text(self.hardware.id),
            "time_s": f64(self.energy.time_s),
            "energy_j": f64(self.energy.energy_j),
            "energy_source": text(self.energy.source),
            "power_w": f64(self.energy.power_w),
            "grid": text(self.grid.key),
            "ci_g_per_kwh": f64(self.grid.g_per_kwh),
            "pue": f64(self.pue),
            "operational_g": f64(self.operational_g),
            "embodied_g": f64(self.embodied_g),
            "total_g": f64(self.total_g),
            "tcdp_g_s": f64(self.tcdp_g_s),
            "device_embodied_kg": f64(self.embodied.total_g / 1e3),
            "embodied_boundary": text(self.bom.boundary),
            "lifetime_years": f64(self.pass_.lifetime),
            "utilization": f64(self.pass_.utilization),
            "class_co2e_g": ir.DictAttr.get({k: f64(v * self.total_g) for k, v in self.class_share.items()}),
            "data_version": text(self.data_version),
            "sources": ir.DictAttr.get({k: text(v) for k, v in self.sources().items()}),
        }

    @property
    def pue(self) -> float:
        return self.pass_.pue

    def sources(self) -> dict[str, str]:
        """Where each input came from, for the IR and the reports."""
        return {
            "grid": self.grid.source,
            "fab_grid": f"{self.fab_grid.key}: {self.fab_grid.source}",
            "energy": self.energy.note or self.energy.source,
            "tdp_w": self.hardware.sources["tdp_w"],
            "memory_bytes": self.hardware.sources["memory_bytes"],
        } | self.bom.sources

    def to_json(self) -> dict[str, object]:
        """Everything a report needs, in plain units (J, s, g, kg, W)."""
        return {
            "hardware": self.hardware.id,
            "hardware_name": self.hardware.name,
            "hardware_kind": self.hardware.kind,
            "time_s": self.energy.time_s,
            "energy": self.energy.to_json(),
            "grid": {"key": self.grid.key, "name": self.grid.name, "g_per_kwh": self.grid.g_per_kwh},
            "pue": self.pue,
            "lifetime_years": self.pass_.lifetime,
            "utilization": self.pass_.utilization,
            "operational_g": self.operational_g,
            "embodied_g": self.embodied_g,
            "total_g": self.total_g,
            "tcdp_g_s": self.tcdp_g_s,
            "device_embodied": dataclasses.asdict(self.embodied) | {"total_g": self.embodied.total_g},
            "embodied_boundary": self.bom.boundary,
            "class_share": self.class_share,
            "data_version": self.data_version,
            "sources": self.sources(),
        }


def _profiled_ops(module: ir.Operation) -> list[ir.Operation]:
    """Every op effc-profile timed."""
    found: list[ir.Operation] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if OP_TIME in op.attributes:
            found.append(op)
        return ir.WalkResult.ADVANCE

    module.walk(visit)
    return found


def _f64(op: ir.Operation, key: str) -> float:
    attr = op.attributes[key]
    if not isinstance(attr, ir.FloatAttr):
        raise PassFailure(f"effc-carbon: '{key}' is {attr}, not a float; rerun effc-profile", op.location)
    return attr.value
