// effc-rational-gelu writes an f32 erf-form GELU as x/2 * (1 + erf(u)), u = clamp(x/sqrt(2), -4, 4), with erf(u) one
// ratio u·P(u²)/Q(u²) of polynomials, and leaves the tanh form and narrower floats as they are, counted by reason in
// the module attribute effc.rational_gelu.

// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-rational-gelu)' | FileCheck %s

// CHECK:       module attributes {effc.rational_gelu = "1/3 GELUs with a rational erf; left: not f32 (1), tanh form or unknown approximation (1)"}
// CHECK-LABEL: func.func @erf_form(
// CHECK-SAME:      %[[X:.*]]: !torch.vtensor<[2,8],f32>
// CHECK:         %[[SQRT_HALF:.*]] = torch.constant.float 0.70710678118654757
// CHECK:         %[[SCALED:.*]] = torch.aten.mul.Scalar %[[X]], %[[SQRT_HALF]]
// CHECK:         %[[LO:.*]] = torch.constant.float -4.000000e+00
// CHECK:         %[[HI:.*]] = torch.constant.float 4.000000e+00
// CHECK:         %[[U:.*]] = torch.aten.clamp %[[SCALED]], %[[LO]], %[[HI]]
// CHECK:         %[[U2:.*]] = torch.aten.mul.Tensor %[[U]], %[[U]]
// P(u²), Horner from the u^12 term (its coefficient is negative and tiny) down to 2/sqrt(pi).
// CHECK:         %[[P6:.*]] = torch.constant.float -1.317370194555904E-8
// CHECK:         torch.aten.mul.Scalar %[[U2]], %[[P6]]
// CHECK-COUNT-5: torch.aten.mul.Tensor %{{.*}}, %[[U2]]
// CHECK:         %[[P0:.*]] = torch.constant.float 1.1283791694387397
// CHECK:         %[[P:.*]] = torch.aten.add.Scalar %{{.*}}, %[[P0]]
// CHECK:         %[[NUM:.*]] = torch.aten.mul.Tensor %[[U]], %[[P]]
// Q(u²), constant term 1.
// CHECK:         %[[Q5:.*]] = torch.constant.float 6.30735161521{{[0-9]*}}E-5
// CHECK:         torch.aten.mul.Scalar %[[U2]], %[[Q5]]
// CHECK-COUNT-4: torch.aten.mul.Tensor %{{.*}}, %[[U2]]
// CHECK:         %[[Q:.*]] = torch.aten.add.Scalar
// CHECK:         %[[ERF:.*]] = torch.aten.div.Tensor %[[NUM]], %[[Q]]
// CHECK:         %[[ONE_PLUS:.*]] = torch.aten.add.Scalar %[[ERF]]
// CHECK:         %[[HALF:.*]] = torch.constant.float 5.000000e-01
// CHECK:         %[[HALF_X:.*]] = torch.aten.mul.Scalar %[[X]], %[[HALF]]
// CHECK:         %[[OUT:.*]] = torch.aten.mul.Tensor %[[HALF_X]], %[[ONE_PLUS]]
// CHECK-NOT:     torch.aten.gelu
// CHECK:         return %[[OUT]]
func.func @erf_form(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %none = torch.constant.str "none"
  %y = torch.aten.gelu %x, %none : !torch.vtensor<[2,8],f32>, !torch.str -> !torch.vtensor<[2,8],f32>
  return %y : !torch.vtensor<[2,8],f32>
}

// The tanh form is another function: left.
// CHECK-LABEL: func.func @tanh_form(
// CHECK:         torch.aten.gelu %{{.*}}, %{{.*}} : !torch.vtensor<[2,8],f32>
func.func @tanh_form(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %tanh = torch.constant.str "tanh"
  %y = torch.aten.gelu %x, %tanh : !torch.vtensor<[2,8],f32>, !torch.str -> !torch.vtensor<[2,8],f32>
  return %y : !torch.vtensor<[2,8],f32>
}

// In f16 the small coefficients underflow: left.
// CHECK-LABEL: func.func @half(
// CHECK:         torch.aten.gelu %{{.*}}, %{{.*}} : !torch.vtensor<[2,8],f16>
func.func @half(%x: !torch.vtensor<[2,8],f16>) -> !torch.vtensor<[2,8],f16> {
  %none = torch.constant.str "none"
  %y = torch.aten.gelu %x, %none : !torch.vtensor<[2,8],f16>, !torch.str -> !torch.vtensor<[2,8],f16>
  return %y : !torch.vtensor<[2,8],f16>
}
