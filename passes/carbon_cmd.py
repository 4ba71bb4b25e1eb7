"""`effc carbon MODEL`: energy, CO2e and tCDP per inference, compared across devices and pipeline variants.

    effc carbon minilm --grid FRA --hardware host-cpu,h100-sxm \\
        --variant fused='builtin.module(canonicalize)' -o minilm-carbon

The model is imported once; each variant's pipeline (the plain import is variant `base`) runs, then
`effc-profile{target=DEVICE}` and `effc-carbon` for every device. With `--measure`, devices this machine
can meter (RAPL for host-cpu, NVML for the local GPU model) are compiled, run and measured, and the
measured totals replace the modeled ones; the rest stay modeled, with the reason in the report.

Writes, in the output directory: `report.html`/`report.json` (effc's profile report of the base
variant with the carbon sections of `carbon_sections`: tables and inline SVG bar charts), `carbon.json`
(every figure with its source) and `emissions.csv` with CodeCarbon's columns and units (energy in kWh,
emissions in kg CO2e, power in W, time in s), one row per variant and device for one million
inferences, so existing CodeCarbon dashboards and notebooks read it. CodeCarbon's `emissions` column is
operational CO2e only; embodied and total CO2e are in extra `effc_*` columns.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import os
import platform
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effc.compiler.compile_cmd import add_model_arguments, model_options

if TYPE_CHECKING:  # the CLI imports this module eagerly: MLIR, torch and IREE load inside `run`
    from effc.compiler.api import CompiledModel
    from effc.passes.hardware import Hardware
    from effc.passes.report import OpRow, Section
    from effc.runtime.energy import Measurement

# The reports' "per million inferences" unit; each emissions.csv row stands for this many inferences.
INFERENCES = 1_000_000
BASE_VARIANT = "base"
# The word NVML's device name must contain for a measurement to count as this hardware id.
NVML_NAMES = {"a100": "A100", "h100-sxm": "H100", "h200-sxm": "H200"}
# CodeCarbon's emissions.csv columns in the order of its docs (docs/reference/output.md), with
# experiment_id and pue where its EmissionsData (codecarbon/output_methods/emissions_data.py) has them.
CODECARBON_COLUMNS = (
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions", "emissions_rate",
    "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed",
    "country_name", "country_iso_code", "region", "on_cloud", "cloud_provider", "cloud_region", "os",
    "python_version", "codecarbon_version", "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude",
    "latitude", "ram_total_size", "tracking_mode", "cpu_utilization_percent", "gpu_utilization_percent",
    "ram_utilization_percent", "ram_used_gb", "pue",
)  # fmt: skip
EFFC_COLUMNS = (
    "effc_variant", "effc_hardware", "effc_inferences", "effc_energy_source", "effc_embodied_emissions",
    "effc_total_emissions", "effc_tcdp_g_s_per_inference", "effc_grid",
)  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "carbon",
        help="energy, CO2e and tCDP per inference across devices and pipeline variants",
        description="Profile MODEL for each device, then estimate energy, operational and embodied CO2e (ACT "
        "model) and tCDP per inference; compare devices and pass-pipeline variants side by side. Writes "
        "report.html/report.json, carbon.json and a CodeCarbon-style emissions.csv.",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--grid",
        default="world",
        help="electricity: ISO country code (FRA, US), world, europe, "
        "a source (coal, gas, solar, wind, ...) or g CO2e/kWh (default: world)",
    )
    parser.add_argument(
        "--hardware",
        metavar="IDS",
        help="comma-separated device ids of hardware.json (default: all of them: host-cpu, a100, h100-sxm, h200-sxm)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=PIPELINE",
        help="also evaluate the model after PIPELINE (repeatable), e.g. "
        "chai='builtin.module(effc-chai)'; the plain import is variant 'base'",
    )
    parser.add_argument("--lifetime", type=float, default=5.0, help="device lifetime in years (default: 5)")
    parser.add_argument(
        "--utilization",
        type=float,
        default=1.0,
        help="share of the lifetime the device is busy, in (0, 1] (default: 1)",
    )
    parser.add_argument("--pue", type=float, default=1.0, help="datacenter PUE, >= 1 (default: 1)")
    parser.add_argument(
        "--measure",
        action="store_true",
        help="compile and run on this machine and measure "
        "energy with RAPL (host-cpu) or NVML (the local GPU); other devices stay modeled",
    )
    parser.add_argument("-o", "--output-dir", metavar="DIR", help="output directory (default: MODEL_NAME-carbon)")
    parser.set_defaults(handler=run)


@dataclass(frozen=True)
class Variant:
    """A named pipeline run before profiling; `base` has none."""

    name: str
    pipeline: str | None

    def analysis_pipeline(self, hardware_id: str) -> str:
        """The variant's passes followed by the profile for `hardware_id`, as one pipeline."""
        from effc.passes.pipeline import chain_pipelines

        return str(chain_pipelines(self.pipeline, f"builtin.module(effc-profile{{target={hardware_id}}})"))


def parse_variants(specs: list[str]) -> list[Variant]:
    """`NAME=PIPELINE` specs, after the base variant; pipelines are parsed now so typos fail before import."""
    from effc.compiler.errors import EffcError
    from effc.passes import parse_pipeline

    variants = [Variant(BASE_VARIANT, None)]
    for spec in specs:
        name, sep, pipeline = spec.partition("=")
        name = name.strip()
        if not sep or not name or not pipeline.strip():
            raise EffcError(f"--variant '{spec}' is not NAME=PIPELINE, e.g. chai='builtin.module(effc-chai)'")
        if any(v.name == name for v in variants):
            raise EffcError(f"--variant name '{name}' is used twice ('{BASE_VARIANT}' is the plain import)")
        parse_pipeline(pipeline)
        variants.append(Variant(name, pipeline))
    return variants


def parse_hardware(spec: str | None) -> list[Hardware]:
    """Device ids from `--hardware` (default: every device of hardware.json), each with carbon data."""
    from effc.compiler.errors import EffcError
    from effc.passes.carbon_data import device_bom
    from effc.passes.hardware import hardware_ids, load_hardware

    ids = [s.strip() for s in spec.split(",") if s.strip()] if spec is not None else hardware_ids()
    if not ids:
        raise EffcError("--hardware is empty; give device ids such as host-cpu,h100-sxm")
    devices = [load_hardware(device_id) for device_id in ids]
    for device_id in ids:
        device_bom(device_id)
    return devices


def run(args: argparse.Namespace) -> int:
    from effc.compiler.api import compile_model
    from effc.compiler.fileio import write_atomic
    from effc.compiler.progress import report_console
    from effc.passes.carbon import CarbonPass
    from effc.passes.report import ProfileReport, write_report
    from effc.runtime.benchmark import machine_description

    template = CarbonPass(grid=args.grid, lifetime=args.lifetime, utilization=args.utilization, pue=args.pue)
    variants = parse_variants(args.variant)
    devices = parse_hardware(args.hardware)
    imported = compile_model(
        args.model, inputs=tuple(args.input), target=args.target, cuda_arch=args.cuda_arch,
        attention=args.attention, emit="torch", trust_pickle=args.trust_pickle, progress=True,
    )  # fmt: skip
    measurer = _Measurer(args) if args.measure else None
    evaluated = [
        _evaluate(imported.mlir, variant, device, template, measurer, args.model)
        for variant in variants
        for device in devices
    ]
    rows = [row for row, _ in evaluated]
    payload = {
        "model": imported.name,
        "inputs": [list(t.shape) for t in imported.example_inputs],
        "settings": {
            "grid": args.grid,
            "lifetime_years": args.lifetime,
            "utilization": args.utilization,
            "pue": args.pue,
            "measure": args.measure,
        },
        "csv_row_inferences": INFERENCES,
        "machine": machine_description(),
        "rows": rows,
    }
    report = ProfileReport(
        model=imported.name,
        target=args.target,
        hardware=devices[0].id,
        hardware_name=devices[0].name,
        device=", ".join(sorted({r["energy"]["source"] for r in rows})),
        summary={
            "grid": f"{rows[0]['grid']['name']} ({rows[0]['grid']['g_per_kwh']:g} g/kWh)",
            "lowest CO2e": _best(rows, "total_g"),
            "lowest tCDP": _best(rows, "tcdp_g_s"),
        },
        ops=evaluated[0][1],
        sections=carbon_sections(rows),
    )
    out = Path(args.output_dir or f"{imported.name}-carbon")
    write_report(report, out)
    write_atomic(out / "carbon.json", json.dumps(payload, indent=2) + "\n")
    write_atomic(out / "emissions.csv", emissions_csv(payload))
    console = report_console()
    _print_table(console, payload)
    console.print(f"wrote {out}/report.html, report.json, carbon.json and emissions.csv")
    return 0


def _best(rows: list[dict[str, Any]], key: str) -> str:
    best = min(rows, key=lambda r: r[key])
    return f"{best['variant']} @ {best['hardware']}"


def _evaluate(
    mlir: str, variant: Variant, device: Hardware, template: Any, measurer: _Measurer | None, source: str
) -> tuple[dict[str, Any], list[OpRow]]:
    """One report row (the variant's pipeline, effc-profile, effc-carbon) and the profiled ops."""
    import dataclasses

    from effc.compiler.mlir_context import new_context, parse_module
    from effc.passes import run as run_pipeline
    from effc.passes.dispatch_profile import tag_ops

    measured, note = measurer.measure(variant, device) if measurer else (None, "modeled: run with --measure to meter")
    carbon = dataclasses.replace(
        template,
        hardware=device.id,
        measured_energy_j=measured.energy_j if measured else None,
        measured_time_s=measured.time_s if measured else None,
        meter="rapl" if measured and measured.source == "measured-rapl" else "nvml",
    )
    module = parse_module(mlir, new_context(), source)
    run_pipeline(module, variant.analysis_pipeline(device.id), source_name=source)
    with module.context:
        result = carbon.annotate(module.operation)
    head = {"variant": variant.name, "pipeline": variant.pipeline, "measurement": note}
    row = head | {"meter": measured.to_json() if measured else None} | result.to_json()
    return row, tag_ops(module)


class _Measurer:
    """Compiles each variant for this machine once and measures it on the devices it can meter."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.compiled: dict[tuple[str, str], CompiledModel] = {}

    def measure(self, variant: Variant, device: Hardware) -> tuple[Measurement | None, str]:
        from effc.runtime.energy import MeterUnavailable, measure, open_meter

        kind = "cpu" if device.kind == "cpu" else "gpu"
        try:
            meter = open_meter(kind)
        except MeterUnavailable as err:
            return None, f"modeled: {err}"
        try:
            if kind == "gpu" and NVML_NAMES.get(device.id, device.id) not in meter.device:
                return None, f"modeled: the GPU here is {meter.device}, not {device.name}"
            compiled = self._compile(variant, "llvm-cpu" if kind == "cpu" else "cuda")
            return measure(_call_loop(compiled), meter), f"measured on {meter.device}"
        except MeterUnavailable as err:
            return None, f"modeled: {err}"
        finally:
            meter.close()

    def _compile(self, variant: Variant, target: str) -> CompiledModel:
        from effc.compiler.api import compile_model

        key = (variant.name, target)
        if key not in self.compiled:
            a = self.args
            options = model_options(argparse.Namespace(**vars(a) | {"target": target}), variant.pipeline)
            self.compiled[key] = compile_model(a.model, progress=True, **options)
        return self.compiled[key]


def _call_loop(compiled: CompiledModel) -> Any:
    """One synchronous inference of the compiled module: results are copied to the host before returning."""
    import iree.runtime as rt

    module = rt.load_vm_flatbuffer(compiled.vmfb, driver=compiled.device)
    inputs = compiled.numpy_inputs()

    def once() -> None:
        outputs = module.main(*inputs)
        for output in outputs if isinstance(outputs, (tuple, list)) else [outputs]:
            output.to_host()

    return once


# --- outputs -----------------------------------------------------------------------------------------------


def per_million(row: dict[str, Any]) -> dict[str, float]:
    """A row's figures for one million inferences, in the reports' units (kWh, kg CO2e, hours)."""
    return {
        "device_hours": row["time_s"] * INFERENCES / 3600,
        "energy_kwh": row["energy"]["energy_j"] * INFERENCES / 3.6e6,
        "operational_kg": row["operational_g"] * INFERENCES / 1e3,
        "embodied_kg": row["embodied_g"] * INFERENCES / 1e3,
        "total_kg": row["total_g"] * INFERENCES / 1e3,
    }


def emissions_csv(payload: dict[str, Any]) -> str:
    """CodeCarbon's emissions.csv, one row per variant and device for `INFERENCES` inferences."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*CODECARBON_COLUMNS, *EFFC_COLUMNS], lineterminator="\n")
    writer.writeheader()
    timestamp = datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    run_id = str(uuid.uuid4())
    for row in payload["rows"]:
        million = per_million(row)
        duration_s = row["time_s"] * INFERENCES
        is_gpu = row["hardware_kind"] == "gpu"
        grid = row["grid"]
        iso = grid["key"] if len(grid["key"]) == 3 and grid["key"].isupper() else ""
        writer.writerow({
            "timestamp": timestamp,
            "project_name": f"effc carbon {payload['model']}",
            "run_id": run_id,
            "experiment_id": f"{row['variant']}@{row['hardware']}",
            "duration": duration_s,
            "emissions": million["operational_kg"],
            "emissions_rate": million["operational_kg"] / duration_s,
            "cpu_power": 0.0 if is_gpu else row["energy"]["power_w"],
            "gpu_power": row["energy"]["power_w"] if is_gpu else 0.0,
            "ram_power": 0.0,
            "cpu_energy": 0.0 if is_gpu else million["energy_kwh"],
            "gpu_energy": million["energy_kwh"] if is_gpu else 0.0,
            "ram_energy": 0.0,
            "energy_consumed": million["energy_kwh"],
            "country_name": grid["name"] if iso else "",
            "country_iso_code": iso,
            "region": "" if iso else grid["key"],
            "cloud_provider": "",
            "cloud_region": "",
            "os": platform.platform(),
            "python_version": platform.python_version(),
            "codecarbon_version": "",
            "cpu_count": "" if is_gpu else os.cpu_count(),
            "cpu_model": "" if is_gpu else row["hardware_name"],
            "gpu_count": 1 if is_gpu else 0,
            "gpu_model": f"1 x {row['hardware_name']}" if is_gpu else "",
            "longitude": "",
            "latitude": "",
            "ram_total_size": "",
            "tracking_mode": "machine",
            "on_cloud": "N",
            "cpu_utilization_percent": "",
            "gpu_utilization_percent": "",
            "ram_utilization_percent": "",
            "ram_used_gb": "",
            "pue": row["pue"],
            "effc_variant": row["variant"],
            "effc_hardware": row["hardware"],
            "effc_inferences": INFERENCES,
            "effc_energy_source": row["energy"]["source"],
            "effc_embodied_emissions": million["embodied_kg"],
            "effc_total_emissions": million["total_kg"],
            "effc_tcdp_g_s_per_inference": row["tcdp_g_s"],
            "effc_grid": grid["key"],
        })  # fmt: skip
    return buffer.getvalue()


def carbon_sections(rows: list[dict[str, Any]]) -> list[Section]:
    """The carbon part of a report: energy, CO2e and tCDP side by side (each with a bar chart), per
    million inferences, op classes, embodied carbon per device and the source of every input."""
    from effc.passes.report import Section

    first = rows[0]
    grid = first["grid"]
    label = [f"{r['variant']} @ {r['hardware']}" for r in rows]
    devices = list({r["hardware"]: r for r in rows}.values())
    classes = [c for c in first["class_share"] if any(r["class_share"].get(c, 0) > 0 for r in rows)]
    return [
        Section(
            "Energy per inference",
            ["variant", "device", "time", "energy", "source", "mean power", "measurement"],
            [
                [r["variant"], r["hardware"], _si(r["time_s"], "s"), _si(r["energy"]["energy_j"], "J"),
                 r["energy"]["source"], _si(r["energy"]["power_w"], "W"), r["measurement"]]
                for r in rows
            ],
            note="modeled = effc-profile's roofline time x the device's TDP x its load fraction (devices.json); "
            "measured = NVML or RAPL energy counter, median of >= 1 s windows, split across ops by profiled time.",
            bars=dict(zip(label, (r["energy"]["energy_j"] for r in rows), strict=True)),
            unit="J",
        ),
        Section(
            "CO2e per inference",
            ["variant", "device", "operational", "embodied", "total CO2e"],
            [
                [r["variant"], r["hardware"], _si(r["operational_g"], "g"), _si(r["embodied_g"], "g"),
                 _si(r["total_g"], "g")]
                for r in rows
            ],
            note=f"Grid {grid['name']} ({grid['g_per_kwh']:g} g CO2e/kWh), PUE {first['pue']:g}. Embodied: ACT "
            f"model amortized over {first['lifetime_years']:g} years at {first['utilization']:.0%} utilization "
            f"(T / (lifetime x utilization) x device embodied carbon). Data: {first['data_version']}.",
            bars=dict(zip(label, (r["total_g"] for r in rows), strict=True)),
            unit="g CO2e",
        ),
        Section(
            "tCDP and per million inferences",
            ["variant", "device", "tCDP", "device hours", "energy kWh", "operational kg", "embodied kg",
             "total kg CO2e"],
            [
                [r["variant"], r["hardware"], _si(r["tcdp_g_s"], "g·s"),
                 *(f"{v:.4g}" for v in per_million(r).values())]
                for r in rows
            ],
            note="tCDP (arXiv 2305.01831) = total CO2e x execution time per inference; lower is better.",
            bars=dict(zip(label, (r["tcdp_g_s"] for r in rows), strict=True)),
            unit="g·s",
        ),
        Section(
            "CO2e by op class (share of each inference)",
            ["variant", "device", *classes],
            [[r["variant"], r["hardware"], *(f"{r['class_share'].get(c, 0):.1%}" for c in classes)] for r in rows],
            note="Share of effc-profile's estimated time per op class; energy and CO2e split the same way.",
        ),
        Section(
            "Embodied carbon per device (ACT)",
            ["device", "dies", "memory", "packaging", "share of package", "total", "boundary"],
            [
                [r["hardware"], *(_si(r["device_embodied"][k], "g") for k in ("dies_g", "memory_g", "packaging_g")),
                 f"{r['device_embodied']['share']:.3g}", _si(r["device_embodied"]["total_g"], "g"),
                 r["embodied_boundary"]]
                for r in devices
            ],
            note="dies: area x (CI_fab x EPA + GPA + MPA) / yield per process node; memory: GB x g/GB / yield; "
            "packaging: 150 g per IC (ACT, Gupta et al. ISCA'22).",
        ),
        Section(
            "Carbon data sources",
            ["device", "input", "source"],
            [[r["hardware"], key, source] for r in devices for key, source in r["sources"].items()],
        ),
    ]  # fmt: skip


def _si(value: float, unit: str) -> str:
    """A value with an SI prefix, so per-inference grams read as µg or ng instead of 1e-9."""
    if value == 0:
        return f"0 {unit}"
    for scale, prefix in (
        (1e3, "k"),
        (1, ""),
        (1e-3, "m"),
        (1e-6, "µ"),
        (1e-9, "n"),
        (1e-12, "p"),
        (1e-15, "f"),
        (1e-18, "a"),
    ):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _print_table(console: Any, payload: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{payload['model']}: per inference (and per {INFERENCES:,} inferences)")
    for column in ("variant", "device", "energy", "source", "CO2e", "kg CO2e / 1M", "tCDP"):
        table.add_column(column, justify="left" if column in ("variant", "device", "source") else "right")
    for r in payload["rows"]:
        table.add_row(
            r["variant"], r["hardware"], _si(r["energy"]["energy_j"], "J"), r["energy"]["source"],
            _si(r["total_g"], "g"), f"{per_million(r)['total_kg']:.4g}", _si(r["tcdp_g_s"], "g·s"),
        )  # fmt: skip
    console.print(table)
