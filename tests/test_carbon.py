"""effc-carbon, its data files and the energy meters.

The expected numbers are worked by hand from ACT's equations (Gupta et al., ISCA'22):
CPA = (CI_fab x EPA + GPA97 + MPA) / Y with Y = 0.875 and GPA97 the mean of ACT's GPA95/GPA99 tables;
memory = GB x CPS / Y; packaging = 150 g per IC; amortized embodied = E x T / (lifetime x year x
utilization) with a 365.25-day year; operational = J / 3.6e6 x PUE x g/kWh; tCDP = total x T.
"""

from __future__ import annotations

import csv
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from effc.compiler.errors import EffcError
from effc.passes import carbon_data
from effc.passes.carbon import (
    CarbonPass,
    amortized_g,
    cpa_g_per_cm2,
    device_embodied,
    operational_g,
    tcdp_g_s,
)
from effc.passes.hardware import Hardware, load_hardware
from effc.runtime import energy
from effc.tests.conftest import CliResult

# A module as effc-profile leaves it: 3 us of linear and 1 us of elementwise work on an H100.
PROFILED = """
module attributes {effc.profile.target = "h100-sxm", effc.profile.est_time_s = 4.000000e-06 : f64,
    effc.profile.class_share = {elementwise = 2.500000e-01 : f64, linear = 7.500000e-01 : f64}} {
  func.func @main(%a: !torch.vtensor<[4,32],f32>, %b: !torch.vtensor<[32,64],f32>)
      -> !torch.vtensor<[4,64],f32> {
    %0 = torch.aten.mm %a, %b {effc.est_time_s = 3.000000e-06 : f64, effc.op_class = "linear"}
        : !torch.vtensor<[4,32],f32>, !torch.vtensor<[32,64],f32> -> !torch.vtensor<[4,64],f32>
    %1 = torch.aten.relu %0 {effc.est_time_s = 1.000000e-06 : f64, effc.op_class = "elementwise"}
        : !torch.vtensor<[4,64],f32> -> !torch.vtensor<[4,64],f32>
    return %1 : !torch.vtensor<[4,64],f32>
  }
}
"""

# H100 SXM embodied carbon by hand, fab in Taiwan (grid.json TWN, 573.275 g/kWh), 5nm row:
# CPA = (573.275 x 2.75 + 327.5 + 500) / 0.875 = 2747.4357 g/cm2; die 8.14 cm2 -> 22364.1267 g;
# 80 GB x 65 / 0.875 = 5942.8571 g; 7 ICs x 150 g = 1050 g; total 29356.9839 g.
H100_EMBODIED_G = 29356.9839


def test_cpa_reproduces_act_per_node_values() -> None:
    """ACT's default CPA (GPA97, Y = 0.875) at the fab intensities ACT's own tables use."""
    logic = carbon_data.load_fab().logic
    # (642 x 2.75 + 327.5 + 500) / 0.875 and (583 x 2.75 + 327.5 + 500) / 0.875
    assert cpa_g_per_cm2(logic["5nm"], 642, 0.875) == pytest.approx(2963.4286, rel=1e-7)
    assert cpa_g_per_cm2(logic["5nm"], 583, 0.875) == pytest.approx(2778.0, rel=1e-9)
    # (583 x 0.90 + 137.5 + 500) / 0.875
    assert cpa_g_per_cm2(logic["28nm"], 583, 0.875) == pytest.approx(1328.2286, rel=1e-7)


def test_h100_embodied_carbon_by_hand() -> None:
    fab = carbon_data.load_fab()
    twn = carbon_data.load_grid().lookup(fab.fab_grid).g_per_kwh
    parts = device_embodied(carbon_data.device_bom("h100-sxm"), load_hardware("h100-sxm"), fab, twn)
    assert (parts.dies_g, parts.memory_g, parts.packaging_g) == pytest.approx((22364.1267, 5942.8571, 1050.0))
    assert parts.total_g == pytest.approx(H100_EMBODIED_G, rel=1e-8)
    assert parts.share == 1.0


def test_host_cpu_embodied_is_its_tdp_share_of_the_package() -> None:
    """2 vCPUs at 1.875 W each of a 360 W EPYC 9654 (12 CCDs of 72 mm2 at 5nm, a 397 mm2 IOD at 7nm)."""
    fab = carbon_data.load_fab()
    twn = carbon_data.load_grid().lookup("TWN").g_per_kwh
    host = Hardware("host-cpu", "test CPU", "cpu", {}, {}, 1e10, 8e9, 3.75, {})
    parts = device_embodied(carbon_data.device_bom("host-cpu"), host, fab, twn)
    # dies: 12 x 0.72 x 2747.4357 + 3.97 x (573.275 x 2.15 + 775) / 0.875 = 32846.3460 g, x 3.75/360
    assert parts.share == pytest.approx(3.75 / 360)
    assert parts.dies_g == pytest.approx(342.1494, rel=1e-6)
    assert parts.packaging_g == pytest.approx(20.3125)  # 13 ICs x 150 g x 3.75/360
    assert parts.memory_g == pytest.approx(594.2857, rel=1e-6)  # 8 GB x 65 / 0.875, not shared
    assert parts.total_g == pytest.approx(956.7477, rel=1e-6)


def test_operational_amortized_and_tcdp_by_hand() -> None:
    assert operational_g(0.5, 67.39, 1.1) == pytest.approx(1.02956944e-5)  # 0.5/3.6e6 x 1.1 x 67.39
    # 29356.98 g x 1 ms / (5 years x 31,557,600 s x 0.5)
    assert amortized_g(H100_EMBODIED_G, 1e-3, 5, 0.5) == pytest.approx(3.7210667e-7, rel=1e-6)
    assert tcdp_g_s(2.0, 3e-3) == pytest.approx(6e-3)


def _run(pipeline: str, text: str = PROFILED) -> str:
    from effc.passes import run

    return run(text, pipeline)


def _attr(ir_text: str, name: str) -> str:
    """The printed value of attribute `name` (first occurrence)."""
    start = ir_text.index(f"{name} = ") + len(name) + 3
    end = min(i for i in (ir_text.find(",", start), ir_text.find("}", start)) if i >= 0)
    return ir_text[start:end].strip()


def _f(ir_text: str, name: str) -> float:
    return float(_attr(ir_text, name).split(":")[0])


def test_pass_models_energy_and_carbon_per_op_and_module() -> None:
    out = _run("builtin.module(effc-carbon{grid=FR lifetime=5})")
    # 700 W TDP x load fraction 1 x 4 us = 2.8 mJ, split 3:1 by profiled time.
    assert _f(out, "effc.carbon.energy_j") == pytest.approx(2.8e-3)
    assert _attr(out, "effc.carbon.energy_source") == '"modeled"'
    assert _attr(out, "effc.carbon.grid") == '"FRA"'
    mm, relu = out.split("torch.aten.mm")[1], out.split("torch.aten.relu")[1]
    assert (_f(mm, "effc.energy_j"), _f(relu, "effc.energy_j")) == pytest.approx((2.1e-3, 0.7e-3))
    # 2.8e-3 J / 3.6e6 x 67.39 g/kWh; 29356.98 g x 4e-6 s / (5 x 31,557,600 s)
    assert _f(out, "effc.carbon.operational_g") == pytest.approx(5.2414444e-8)
    assert _f(out, "effc.carbon.embodied_g") == pytest.approx(7.4421335e-10, rel=1e-6)
    assert _f(out, "effc.carbon.total_g") == pytest.approx(5.3158658e-8, rel=1e-6)
    assert _f(out, "effc.carbon.tcdp_g_s") == pytest.approx(2.1263463e-13, rel=1e-6)
    assert _f(out, "effc.carbon.device_embodied_kg") == pytest.approx(29.3569839)
    assert _f(mm, "effc.co2e_g") == pytest.approx(0.75 * 5.3158658e-8, rel=1e-6)
    assert "class_co2e_g = {elementwise = " in out and "linear = " in out
    assert 'effc.carbon.data_version = "grid 2026.1, fab 2026.1, devices 2026.1"' in out


def test_measured_total_replaces_the_model_and_keeps_its_label() -> None:
    out = _run("builtin.module(effc-carbon{grid=FRA measured-energy-j=0.01 measured-time-s=2e-5 meter=rapl})")
    assert _attr(out, "effc.carbon.energy_source") == '"measured-rapl"'
    assert _f(out, "effc.carbon.time_s") == pytest.approx(2e-5)
    mm, relu = out.split("torch.aten.mm")[1], out.split("torch.aten.relu")[1]
    assert (_f(mm, "effc.energy_j"), _f(relu, "effc.energy_j")) == pytest.approx((7.5e-3, 2.5e-3))
    # 0.01 J / 3.6e6 x 67.39; embodied amortized over the measured 20 us
    assert _f(out, "effc.carbon.operational_g") == pytest.approx(1.8719444e-7)
    assert _f(out, "effc.carbon.embodied_g") == pytest.approx(3.7210667e-9, rel=1e-6)


def test_grid_accepts_codes_names_sources_and_numbers() -> None:
    grid = carbon_data.load_grid()
    assert grid.lookup("FR") == grid.lookup("fra") == grid.lookup("France")
    assert grid.lookup("FRA").g_per_kwh == 67.39
    assert grid.lookup("coal").g_per_kwh == 820
    given = grid.lookup("123.5")
    assert (given.g_per_kwh, given.kind, given.source) == (123.5, "given", "given by the user")


# --- one-line errors ------------------------------------------------------------------------------------


def test_unknown_region_is_one_line_with_close_matches() -> None:
    with pytest.raises(EffcError) as err:
        CarbonPass(grid="Frnace")
    assert err.value.message == (
        "effc-carbon: unknown grid region 'Frnace'; did you mean France (FRA)? (use an ISO country code "
        "such as FRA or US, world, europe, a source: coal, gas, biomass, solar, geothermal, hydropower, "
        "nuclear, wind, or a number in g CO2e/kWh; see grid.json)"
    )


def test_bad_options_in_a_pipeline_point_at_the_option() -> None:
    with pytest.raises(EffcError) as err:
        _run("builtin.module(effc-carbon{lifetime=-1})")
    assert err.value.message == ("pipeline:1:28: effc-carbon: lifetime must be a positive number of years, got -1.0")
    with pytest.raises(EffcError, match=r"^pipeline:1:28: effc-carbon: utilization must be in \(0, 1\], got 1.5$"):
        _run("builtin.module(effc-carbon{utilization=1.5})")
    with pytest.raises(
        EffcError, match=r"^pipeline:1:28: effc-carbon: give measured-energy-j and measured-time-s together$"
    ):
        _run("builtin.module(effc-carbon{measured-energy-j=1})")


def test_unprofiled_module_or_other_device_is_refused() -> None:
    bare = "module {\n  func.func @f() {\n    return\n  }\n}\n"
    with pytest.raises(EffcError, match="effc-carbon needs effc-profile's annotations") as err:
        _run("builtin.module(effc-carbon)", bare)
    assert "\n" not in err.value.message
    with pytest.raises(EffcError, match=r"effc-carbon\{hardware=a100\} on a module profiled for h100-sxm"):
        _run("builtin.module(effc-carbon{hardware=a100})")


def _broken_copy(tmp_path: Path, source: Path, edit: Callable[[dict], None]) -> Path:
    table = json.loads(source.read_text())
    edit(table)
    path = tmp_path / source.name
    path.write_text(json.dumps(table))
    return path


def test_malformed_data_files_are_one_line_errors(tmp_path: Path) -> None:
    bad_json = tmp_path / "grid.json"
    bad_json.write_text('{"schema_version": 1,\n "version": "x",\n}\n')
    with pytest.raises(EffcError) as err:
        carbon_data.load_grid(bad_json)
    assert err.value.message == (
        f"{bad_json}: malformed JSON at line 3 column 1: Expecting property name enclosed in double quotes; "
        "fix the file or reinstall effc"
    )

    no_source = _broken_copy(tmp_path, carbon_data.FAB_JSON, lambda t: t["logic"]["5nm"].pop("source"))
    with pytest.raises(EffcError) as err:
        carbon_data.load_fab(no_source)
    assert err.value.message == (
        f"{no_source}: logic.5nm has no 'source' text (every value must say where it came from)"
    )

    def negative(t: dict) -> None:
        t["regions"]["FRA"]["g_per_kwh"] = -5

    with pytest.raises(EffcError) as err:
        carbon_data.load_grid(_broken_copy(tmp_path, carbon_data.GRID_JSON, negative))
    assert err.value.message.endswith("grid.json: regions.FRA.g_per_kwh is -5; it must not be negative")

    with pytest.raises(EffcError, match="no 'version' string"):
        carbon_data.load_devices(_broken_copy(tmp_path, carbon_data.DEVICES_JSON, lambda t: t.pop("version")))

    def unknown_node(t: dict) -> None:
        t["devices"]["a100"]["dies"][0]["node"] = "4nm"

    with pytest.raises(EffcError) as err:
        carbon_data.load_devices(_broken_copy(tmp_path, carbon_data.DEVICES_JSON, unknown_node))
    assert err.value.message.endswith(
        "devices.a100.dies[0].node '4nm' is not a node of fab.json (28nm, 20nm, 14nm, 10nm, 8nm, 7nm, 5nm, 3nm)"
    )


def test_every_data_file_has_a_version_and_every_hardware_id_has_carbon_data() -> None:
    from effc.passes.hardware import hardware_ids

    for path in (carbon_data.GRID_JSON, carbon_data.FAB_JSON, carbon_data.DEVICES_JSON):
        assert json.loads(path.read_text())["version"]
    assert set(hardware_ids()) <= set(carbon_data.load_devices().devices)


# --- energy meters ----------------------------------------------------------------------------------------


class _FakeMeter:
    """A counter that gains `joules_per_read` at each read."""

    source: energy.Source = "measured-rapl"
    device = "fake package"

    def __init__(self, joules_per_read: float) -> None:
        self.total, self.step = 0.0, joules_per_read

    def read_j(self) -> float:
        self.total += self.step
        return self.total

    def close(self) -> None:
        pass


def _ticking_clock(step_s: float) -> Callable[[], float]:
    now = [0.0]

    def clock() -> float:
        now[0] += step_s
        return now[0]

    return clock


def test_measure_runs_long_windows_and_labels_the_source() -> None:
    calls = []
    result = energy.measure(
        lambda: calls.append(1), _FakeMeter(2.0), min_window_s=1.0, windows=3, clock=_ticking_clock(0.25)
    )
    # Each window: clock ticks 0.25 s per call, so 4 calls reach 1 s; the meter is read at the start,
    # polled 3 times inside (every >= 0.1 s) and at the end: 4 reads x 2 J over 4 calls = 2 J per call.
    assert result.source == "measured-rapl"
    assert result.energy_j == pytest.approx(2.0)
    assert result.time_s == pytest.approx(0.25)
    assert result.window_energy_j == pytest.approx((2.0, 2.0, 2.0))
    assert (result.calls, len(calls)) == (12, 15)  # 3 warm-up calls are not measured
    assert result.power_w == pytest.approx(8.0)


def test_measure_refuses_a_counter_that_does_not_advance() -> None:
    with pytest.raises(energy.MeterUnavailable, match=r"did not advance in a 1\.00 s window$"):
        energy.measure(lambda: None, _FakeMeter(0.0), clock=_ticking_clock(0.5))


def test_modeled_energy_is_labelled() -> None:
    result = energy.modeled(2e-3, 350.0, "A100", "TDP x time")
    assert (result.source, result.energy_j, result.note) == ("modeled", pytest.approx(0.7), "TDP x time")


def _powercap(root: Path, energy_uj: int, max_uj: int = 1000) -> Path:
    zone = root / "intel-rapl:0"
    (zone / "intel-rapl:0:0").mkdir(parents=True, exist_ok=True)  # a core subzone: must not be summed
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (zone / "intel-rapl:0:0" / "name").write_text("core\n")
    return root


def test_rapl_meter_sums_packages_and_undoes_wraparound(tmp_path: Path) -> None:
    root = _powercap(tmp_path, 900)
    meter = energy.open_meter("cpu", powercap=root)
    assert (meter.source, meter.device) == ("measured-rapl", "RAPL package-0")
    (root / "intel-rapl:0" / "energy_uj").write_text("100\n")  # wrapped: 900 -> 1000 -> 0 -> 100
    assert meter.read_j() == pytest.approx(200e-6)
    (root / "intel-rapl:0" / "energy_uj").write_text("400\n")
    assert meter.read_j() == pytest.approx(500e-6)
    assert energy.rapl_delta_uj(900, 100, 1000) == 200
    assert energy.rapl_delta_uj(100, 400, 1000) == 300


def test_host_energy_falls_back_cleanly_when_no_counter_is_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(energy.MeterUnavailable) as err:
        energy.open_meter("cpu", powercap=tmp_path / "powercap")
    assert str(err.value) == f"{tmp_path / 'powercap'} does not exist (no RAPL powercap driver, e.g. in a VM)"

    (tmp_path / "empty").mkdir()
    with pytest.raises(energy.MeterUnavailable, match="has no RAPL package domain"):
        energy.open_meter("cpu", powercap=tmp_path / "empty")

    root = _powercap(tmp_path / "locked", 5)
    real_read = Path.read_text

    def read_text(path: Path, *args: object, **kwargs: object) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(energy.MeterUnavailable) as err:
        energy.open_meter("cpu", powercap=root)
    assert str(err.value) == (
        f"cannot read {root / 'intel-rapl:0' / 'energy_uj'}: Permission denied (RAPL is root-only since the "
        "2020 PLATYPUS fix; run as root or make energy_uj readable)"
    )


def _fake_pynvml(millijoules: list[int]) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    nvml.NVMLError = NVMLError  # type: ignore[attr-defined]
    nvml.nvmlInit = lambda: None  # type: ignore[attr-defined]
    nvml.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetHandleByIndex = lambda index: f"gpu{index}"  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetName = lambda handle: b"NVIDIA H100 80GB HBM3"  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetTotalEnergyConsumption = lambda handle: millijoules.pop(0)  # type: ignore[attr-defined]
    return nvml


def test_nvml_meter_reads_the_energy_counter_in_millijoules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml([1000, 5000, 12500]))
    meter = energy.open_meter("gpu")
    assert (meter.source, meter.device) == ("measured-nvml", "NVIDIA H100 80GB HBM3 (GPU 0)")
    assert (meter.read_j(), meter.read_j()) == (5.0, 12.5)


def test_nvml_meter_is_unavailable_without_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(energy.MeterUnavailable, match=r"^pynvml is not installed \(pip install nvidia-ml-py\)$"):
        energy.open_meter("gpu")


# --- effc carbon ------------------------------------------------------------------------------------------

MLP = "effc.tests.model_zoo:mlp"
# CodeCarbon's emissions.csv header (docs/reference/output.md and EmissionsData), written out here so that
# a change on either side shows up.
CODECARBON_HEADER = [
    *("timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions", "emissions_rate"),
    *("cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed"),
    *("country_name", "country_iso_code", "region", "on_cloud", "cloud_provider", "cloud_region", "os"),
    *("python_version", "codecarbon_version", "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude"),
    *("latitude", "ram_total_size", "tracking_mode", "cpu_utilization_percent", "gpu_utilization_percent"),
    *("ram_utilization_percent", "ram_used_gb", "pue"),
]


def _outputs(out: Path) -> tuple[dict, dict[str, dict[str, str]], list[str], str]:
    payload = json.loads((out / "carbon.json").read_text())
    with (out / "emissions.csv").open() as handle:
        reader = csv.DictReader(handle)
        rows = {row["experiment_id"]: row for row in reader}
    return payload, rows, list(reader.fieldnames or ()), (out / "report.html").read_text()


def test_carbon_command_compares_devices_and_variants(effc_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = effc_cli(
        "carbon", MLP, "--grid", "FR", "--hardware", "host-cpu,h100-sxm", "--pue", "1.2",
        "--variant", "canon=builtin.module(canonicalize)", "-o", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    payload, csv_rows, header, page = _outputs(out)
    rows = {(r["variant"], r["hardware"]): r for r in payload["rows"]}
    assert list(rows) == [
        ("base", "host-cpu"),
        ("base", "h100-sxm"),
        ("canon", "host-cpu"),
        ("canon", "h100-sxm"),
    ]
    h100 = rows["base", "h100-sxm"]
    assert (h100["energy"]["source"], h100["energy"]["power_w"]) == ("modeled", 700.0)
    assert h100["measurement"] == "modeled: run with --measure to meter"
    assert h100["energy"]["energy_j"] == pytest.approx(700 * h100["time_s"])
    assert h100["operational_g"] == pytest.approx(h100["energy"]["energy_j"] / 3.6e6 * 1.2 * 67.39)
    assert h100["device_embodied"]["total_g"] == pytest.approx(H100_EMBODIED_G)
    assert h100["tcdp_g_s"] == pytest.approx((h100["operational_g"] + h100["embodied_g"]) * h100["time_s"])
    assert sum(h100["class_share"].values()) == pytest.approx(1.0)

    assert header[: len(CODECARBON_HEADER)] == CODECARBON_HEADER
    row = csv_rows["base@h100-sxm"]
    # One row = one million inferences, in CodeCarbon's units: kWh, kg CO2e, s, W.
    assert float(row["energy_consumed"]) == pytest.approx(h100["energy"]["energy_j"] * 1e6 / 3.6e6)
    assert float(row["gpu_energy"]) == float(row["energy_consumed"]) and float(row["cpu_energy"]) == 0
    assert float(row["emissions"]) == pytest.approx(h100["operational_g"] * 1e6 / 1e3)
    assert float(row["effc_total_emissions"]) == pytest.approx(h100["total_g"] * 1e6 / 1e3)
    assert float(row["duration"]) == pytest.approx(h100["time_s"] * 1e6)
    assert (row["gpu_power"], row["pue"], row["effc_energy_source"]) == ("700.0", "1.2", "modeled")
    assert (row["country_name"], row["country_iso_code"], row["gpu_model"]) == (
        "France", "FRA", "1 x NVIDIA H100 SXM5 80GB",
    )  # fmt: skip
    assert float(csv_rows["base@host-cpu"]["cpu_energy"]) > 0

    report = json.loads((out / "report.json").read_text())
    titles = [section["title"] for section in report["sections"]]
    assert titles == [
        "Energy per inference",
        "CO2e per inference",
        "tCDP and per million inferences",
        "CO2e by op class (share of each inference)",
        "Embodied carbon per device (ACT)",
        "Carbon data sources",
    ]
    co2e = report["sections"][1]
    assert co2e["bars"]["canon @ h100-sxm"] == pytest.approx(rows["canon", "h100-sxm"]["total_g"])
    assert (co2e["unit"], co2e["rows"][1][:2]) == ("g CO2e", ["base", "h100-sxm"])
    assert page.count("<svg") >= 4 and "canon @ h100-sxm" in page and "<script" not in page


def test_carbon_command_labels_measured_and_fallback_rows(
    effc_cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No counter here: every row falls back to the model and says why; a fake RAPL counter is measured."""
    monkeypatch.setattr(energy, "POWERCAP", tmp_path / "no-powercap")
    monkeypatch.setitem(sys.modules, "pynvml", None)
    result = effc_cli("carbon", MLP, "--hardware", "host-cpu,a100", "--measure", "-o", str(tmp_path / "a"))
    assert result.code == 0, result.err
    payload, csv_rows, _, _ = _outputs(tmp_path / "a")
    notes = {r["hardware"]: (r["energy"]["source"], r["measurement"]) for r in payload["rows"]}
    no_rapl = f"modeled: {tmp_path / 'no-powercap'} does not exist (no RAPL powercap driver, e.g. in a VM)"
    assert notes == {
        "host-cpu": ("modeled", no_rapl),
        "a100": ("modeled", "modeled: pynvml is not installed (pip install nvidia-ml-py)"),
    }
    assert all(r["meter"] is None for r in payload["rows"])

    monkeypatch.setattr(energy, "open_meter", lambda kind, **_: _FakeMeter(0.5))
    result = effc_cli("carbon", MLP, "--hardware", "host-cpu", "--measure", "-o", str(tmp_path / "b"))
    assert result.code == 0, result.err
    payload, csv_rows, _, page = _outputs(tmp_path / "b")
    (row,) = payload["rows"]
    assert (row["energy"]["source"], row["measurement"]) == ("measured-rapl", "measured on fake package")
    meter = row["meter"]
    assert (meter["source"], meter["device"], len(meter["window_energy_j"])) == (
        "measured-rapl",
        "fake package",
        3,
    )
    assert meter["calls"] > 0 and meter["note"].startswith("median of 3 windows of >= 1 s")
    assert (row["energy"]["energy_j"], row["time_s"]) == (meter["energy_j"], meter["time_s"])
    assert csv_rows["base@host-cpu"]["effc_energy_source"] == "measured-rapl"
    assert "<td class=''>measured-rapl</td>" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--lifetime", "-1"), "effc-carbon: lifetime must be a positive number of years, got -1.0"),
        (("--pue", "0.9"), "effc-carbon: pue must be >= 1 (1 is an ideal datacenter), got 0.9"),
        (
            ("--grid", "atlantis"),
            "effc-carbon: unknown grid region 'atlantis' (use an ISO country code such as FRA",
        ),
        (("--hardware", "tpu-v4"), "unknown hardware target 'tpu-v4'"),
        (
            ("--variant", "chai"),
            "--variant 'chai' is not NAME=PIPELINE, e.g. chai='builtin.module(effc-chai)'",
        ),
        (("--variant", "base=builtin.module(cse)"), "--variant name 'base' is used twice"),
    ],
)
def test_carbon_command_errors_are_one_line(
    effc_cli: Callable[..., CliResult], args: tuple[str, ...], message: str
) -> None:
    result = effc_cli("carbon", MLP, *args)
    assert result.code == 1
    assert result.err.startswith(f"effc: error: {message}")
    assert result.err.count("\n") == 1
