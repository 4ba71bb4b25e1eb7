// effc-narrow-weights stores the constant weights of one-row f32 matmuls (a decode step's) in bf16 or f16 and
// widens them to f32 where the f32 literal was read, so IREE fuses the widening into the matmul. Matmuls it leaves
// are counted by reason in the module attribute effc.narrow_weights.

// RUN: effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-narrow-weights)' | FileCheck %s
// RUN: effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-narrow-weights{type=f16 max-rows=2})' \
// RUN:   | FileCheck %s --check-prefix=F16
// RUN: not effc-opt %s --pass-pipeline='builtin.module(effc-narrow-weights{max-rows=0})' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=ERR

// ERR: error: effc-narrow-weights: max-rows must be at least 1 (got 0)

// nn.Linear on one token: the transposed literal is replaced by a bf16 literal widened to f32, then transposed as
// before. The values round to nearest, ties to even: 1 + 2^-8 (halfway) down to 1.0 (0x3F80), 1 + 3 * 2^-8
// (halfway) up to 1 + 2^-6 (0x3F82); -2 and 2^-126 are exact (0xC000, 0x0080).
// CHECK:       module attributes {effc.narrow_weights = "2/3 matmul weights stored in bf16; left: more than 1 row (1)"}
// CHECK-LABEL: func.func @decode_linear(
// CHECK-SAME:    %[[X:.*]]: !torch.vtensor<[1,2],f32>
// CHECK:         %[[W16:.*]] = torch.vtensor.literal(dense_resource<effc_bf16_weight> : tensor<2x2xbf16>) : !torch.vtensor<[2,2],bf16>
// CHECK:         %[[W:.*]] = torch.aten.to.dtype %[[W16]], %{{.*}} : !torch.vtensor<[2,2],bf16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,2],f32>
// CHECK-NOT:     tensor<2x2xf32>
// CHECK:         %[[WT:.*]] = torch.aten.t %[[W]]
// CHECK:         %[[Y:.*]] = torch.aten.mm %[[X]], %[[WT]] : !torch.vtensor<[1,2],f32>, !torch.vtensor<[2,2],f32> -> !torch.vtensor<[1,2],f32>
// CHECK:         return %[[Y]]
// F16-LABEL:   func.func @decode_linear(
// F16:           torch.vtensor.literal(dense_resource<effc_f16_weight> : tensor<2x2xf16>) : !torch.vtensor<[2,2],f16>
func.func @decode_linear(%x: !torch.vtensor<[1,2],f32>) -> !torch.vtensor<[1,2],f32> {
  %w = torch.vtensor.literal(dense<[[1.00390625, 1.01171875], [-2.0, 1.1754945e-38]]> : tensor<2x2xf32>) : !torch.vtensor<[2,2],f32>
  %wt = torch.aten.t %w : !torch.vtensor<[2,2],f32> -> !torch.vtensor<[2,2],f32>
  %y = torch.aten.mm %x, %wt : !torch.vtensor<[1,2],f32>, !torch.vtensor<[2,2],f32> -> !torch.vtensor<[1,2],f32>
  return %y : !torch.vtensor<[1,2],f32>
}

// A tied embedding: the gather keeps reading the f32 literal; the one-row matmul (a LM head) reads the bf16 copy.
// CHECK-LABEL: func.func @tied(
// CHECK:         %[[E16:.*]] = torch.vtensor.literal(dense_resource<effc_bf16_weight_1> : tensor<3x2xbf16>)
// CHECK:         %[[E:.*]] = torch.aten.to.dtype %[[E16]]
// CHECK:         %[[E32:.*]] = torch.vtensor.literal(dense<{{.*}}> : tensor<3x2xf32>)
// CHECK:         %[[H:.*]] = torch.aten.embedding %[[E32]]
// CHECK:         %[[ET:.*]] = torch.aten.t %[[E]]
// CHECK:         torch.aten.mm %[[H]], %[[ET]]
func.func @tied(%ids: !torch.vtensor<[1],si64>) -> !torch.vtensor<[1,3],f32> {
  %false = torch.constant.bool false
  %int-1 = torch.constant.int -1
  %e = torch.vtensor.literal(dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]> : tensor<3x2xf32>) : !torch.vtensor<[3,2],f32>
  %h = torch.aten.embedding %e, %ids, %int-1, %false, %false : !torch.vtensor<[3,2],f32>, !torch.vtensor<[1],si64>, !torch.int, !torch.bool, !torch.bool -> !torch.vtensor<[1,2],f32>
  %et = torch.aten.t %e : !torch.vtensor<[3,2],f32> -> !torch.vtensor<[2,3],f32>
  %y = torch.aten.mm %h, %et : !torch.vtensor<[1,2],f32>, !torch.vtensor<[2,3],f32> -> !torch.vtensor<[1,3],f32>
  return %y : !torch.vtensor<[1,3],f32>
}

// Two rows: a prompt's matmul stays f32 (with max-rows=2 it narrows).
// CHECK-LABEL: func.func @prefill(
// CHECK-NEXT:    %[[W:.*]] = torch.vtensor.literal(dense<{{.*}}> : tensor<2x2xf32>)
// CHECK-NEXT:    torch.aten.mm %{{.*}}, %[[W]]
// F16-LABEL:   func.func @prefill(
// F16:           dense_resource<effc_f16_weight_2> : tensor<2x2xf16>
func.func @prefill(%x: !torch.vtensor<[2,2],f32>) -> !torch.vtensor<[2,2],f32> {
  %w = torch.vtensor.literal(dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>) : !torch.vtensor<[2,2],f32>
  %y = torch.aten.mm %x, %w : !torch.vtensor<[2,2],f32>, !torch.vtensor<[2,2],f32> -> !torch.vtensor<[2,2],f32>
  return %y : !torch.vtensor<[2,2],f32>
}

// The blobs: [1.0, 1 + 2^-6, -2.0, 2^-126] and the tied embedding's [1 .. 6], little-endian after the alignment word.
// CHECK:       effc_bf16_weight: "0x02000000803F823F00C08000"
// CHECK:       effc_bf16_weight_1: "0x02000000803F004040408040A040C040"

// -----

// Weights that are activations, and f16 ones that would overflow, stay.
// CHECK:       module attributes {effc.narrow_weights = "0/2 matmul weights stored in bf16; left: more than 1 row (1), weight not a constant (1)"}
// F16:         module attributes {effc.narrow_weights = "0/2 matmul weights stored in f16; left: beyond f16's range (1), weight not a constant (1)"}
func.func @activation(%x: !torch.vtensor<[1,2],f32>, %w: !torch.vtensor<[2,2],f32>) -> !torch.vtensor<[1,2],f32> {
  %y = torch.aten.mm %x, %w : !torch.vtensor<[1,2],f32>, !torch.vtensor<[2,2],f32> -> !torch.vtensor<[1,2],f32>
  return %y : !torch.vtensor<[1,2],f32>
}
func.func @huge(%x: !torch.vtensor<[2,2],f32>) -> !torch.vtensor<[2,2],f32> {
  %w = torch.vtensor.literal(dense<[[1.0e5, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>) : !torch.vtensor<[2,2],f32>
  %y = torch.aten.mm %x, %w : !torch.vtensor<[2,2],f32>, !torch.vtensor<[2,2],f32> -> !torch.vtensor<[2,2],f32>
  return %y : !torch.vtensor<[2,2],f32>
}
