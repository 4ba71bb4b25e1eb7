// effc-carbon turns effc-profile's roofline times into energy and CO2e per op and per inference.
// The module below is annotated as effc-profile leaves it: 3 us of linear and 1 us of elementwise
// work on an H100 SXM (700 W TDP, load fraction 1), so the modeled energy is 700 W x 4 us = 2.8 mJ,
// split 3:1 across the ops. France's grid (67.39 g/kWh): 2.8e-3 J / 3.6e6 x 67.39 = 5.2414e-8 g.
// Embodied: 29.357 kg (ACT: GH100 8.14 cm2 x 2747.44 g/cm2 + 80 GB x 65/0.875 g + 7 x 150 g) x 4 us
// over 5 years = 7.4421e-10 g.

// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-carbon{grid=FR})' | FileCheck %s
// CHECK:      module attributes {
// CHECK-SAME:   effc.carbon.class_co2e_g = {elementwise = 1.32{{[0-9]*}}E-8 : f64, linear = 3.98{{[0-9]*}}E-8 : f64
// CHECK-SAME:   effc.carbon.device_embodied_kg = 29.356983{{[0-9]*}} : f64
// CHECK-SAME:   effc.carbon.embodied_g = 7.4421{{[0-9]*}}E-10 : f64
// CHECK-SAME:   effc.carbon.energy_j = 2.800000e-03 : f64
// CHECK-SAME:   effc.carbon.energy_source = "modeled"
// CHECK-SAME:   effc.carbon.grid = "FRA"
// CHECK-SAME:   effc.carbon.hardware = "h100-sxm"
// CHECK-SAME:   effc.carbon.operational_g = 5.2414{{[0-9]*}}E-8 : f64
// CHECK-SAME:   effc.carbon.power_w = 7.000000e+02 : f64
// CHECK-SAME:   effc.carbon.sources = {
// CHECK-SAME:   effc.carbon.total_g = 5.3158{{[0-9]*}}E-8 : f64
// CHECK:      torch.aten.mm {{.*}}{effc.co2e_g = 3.98{{[0-9]*}}E-8 : f64, effc.energy_j = 2.100000e-03 : f64
// CHECK:      torch.aten.relu {{.*}}{effc.co2e_g = 1.32{{[0-9]*}}E-8 : f64, effc.energy_j = 7.000000e-04 : f64

// A measured total (here from RAPL) replaces the model, keeps its label and is split by profiled time.
// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-carbon{grid=FRA measured-energy-j=0.01 measured-time-s=2e-5 meter=rapl})' \
// RUN:   | FileCheck %s --check-prefix=MEASURED
// MEASURED:      effc.carbon.energy_j = 1.000000e-02 : f64
// MEASURED-SAME: effc.carbon.energy_source = "measured-rapl"
// MEASURED-SAME: effc.carbon.time_s = 2.000000e-05 : f64
// MEASURED:      torch.aten.mm {{.*}}effc.energy_j = {{0\.0074999[0-9]*}} : f64
// MEASURED:      torch.aten.relu {{.*}}effc.energy_j = 2.500000e-03 : f64

// Bad options are one-line errors that point at the option.
// RUN: not effc-opt %s --pass-pipeline='builtin.module(effc-carbon{grid=atlantis})' 2>&1 | FileCheck %s --check-prefix=GRID
// GRID: effc: error: pipeline:1:28: effc-carbon: unknown grid region 'atlantis' (use an ISO country code such as FRA or US, world, europe, a source: coal, gas, biomass, solar, geothermal, hydropower, nuclear, wind, or a number in g CO2e/kWh; see grid.json)
// RUN: not effc-opt %s --pass-pipeline='builtin.module(effc-carbon{lifetime=-2})' 2>&1 | FileCheck %s --check-prefix=LIFETIME
// LIFETIME: effc: error: pipeline:1:28: effc-carbon: lifetime must be a positive number of years, got -2.0

// Profiling for another device than the one named, or not profiling at all, fails at the module.
// RUN: not effc-opt %s --pass-pipeline='builtin.module(effc-carbon{hardware=a100})' 2>&1 | FileCheck %s --check-prefix=OTHER
// OTHER: error: effc-carbon{hardware=a100} on a module profiled for h100-sxm: profile for the same device (effc-profile{target=a100})
// RUN: echo 'module {}' | not effc-opt --pass-pipeline='builtin.module(effc-carbon)' 2>&1 | FileCheck %s --check-prefix=UNPROFILED
// UNPROFILED: error: effc-carbon needs effc-profile's annotations; run effc-profile{target=...} before it

// With the real profile in front, every timed op gets energy and CO2e.
// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-profile{target=a100},effc-carbon{grid=coal pue=1.1})' \
// RUN:   | FileCheck %s --check-prefix=PROFILED
// PROFILED:      effc.carbon.ci_g_per_kwh = 8.200000e+02 : f64
// PROFILED-SAME: effc.carbon.hardware = "a100"
// PROFILED-SAME: effc.carbon.pue = 1.100000e+00 : f64
// PROFILED:      torch.aten.mm {{.*}}effc.co2e_g = {{.*}}effc.energy_j = {{.*}}effc.est_time_s =
// PROFILED:      torch.aten.relu {{.*}}effc.co2e_g = {{.*}}effc.energy_j = {{.*}}effc.est_time_s =

module attributes {effc.profile.target = "h100-sxm", effc.profile.est_time_s = 4.000000e-06 : f64,
                   effc.profile.class_share = {elementwise = 2.500000e-01 : f64, linear = 7.500000e-01 : f64}} {
  func.func @main(%a: !torch.vtensor<[4,32],f32>, %b: !torch.vtensor<[32,64],f32>) -> !torch.vtensor<[4,64],f32> {
    %0 = torch.aten.mm %a, %b {effc.est_time_s = 3.000000e-06 : f64, effc.op_class = "linear"}
        : !torch.vtensor<[4,32],f32>, !torch.vtensor<[32,64],f32> -> !torch.vtensor<[4,64],f32>
    %1 = torch.aten.relu %0 {effc.est_time_s = 1.000000e-06 : f64, effc.op_class = "elementwise"}
        : !torch.vtensor<[4,64],f32> -> !torch.vtensor<[4,64],f32>
    return %1 : !torch.vtensor<[4,64],f32>
  }
}
