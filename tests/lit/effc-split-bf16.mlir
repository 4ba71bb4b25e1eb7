// effc-split-bf16 computes f32 matmuls as sums of bf16 products (torch's "high" matmul precision): each operand is
// split into bf16 pieces, and the products of the pieces are one matmul over K stacked that many times, bf16 inputs
// with an f32 result. Constant weights are split here; activations at run time, each piece but the last the top
// bits of what is left (a mask, exact in bf16), the last rounded by the cast. Matmuls it leaves are counted by
// reason in the module attribute effc.split_bf16.

// RUN: effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-split-bf16)' | FileCheck %s
// RUN: effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-split-bf16{pieces=3})' \
// RUN:   | FileCheck %s --check-prefix=SIX
// RUN: not effc-opt %s --pass-pipeline='builtin.module(effc-split-bf16{pieces=4})' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=ERR

// ERR: error: effc-split-bf16: pieces must be 2 or 3 (got 4)

// nn.Linear: the weight (a transposed literal) becomes one bf16 literal [3K, N], its pieces stacked in the order
// of the products a0·b0 + a0·b1 + a1·b0; the input's pieces are stacked as a0, a0, a1. The result stays f32.
// CHECK:       module attributes {effc.split_bf16 = "3/4 f32 matmuls as 3 bf16 products; left: not f32 (1)"}
// CHECK-LABEL: func.func @linear(
// CHECK-SAME:    %[[X:.*]]: !torch.vtensor<[2,2],f32>
// CHECK:         %[[W:.*]] = torch.vtensor.literal(dense_resource<effc_split_weight> : tensor<6x3xbf16>) : !torch.vtensor<[6,3],bf16>
// CHECK:         %[[XI:.*]] = torch.aten.view.dtype %[[X]], %{{.*}} : !torch.vtensor<[2,2],f32>, !torch.int -> !torch.vtensor<[2,2],si32>
// CHECK:         %[[TOPI:.*]] = torch.aten.bitwise_and.Scalar %[[XI]], %int-65536
// CHECK:         %[[TOP:.*]] = torch.aten.view.dtype %[[TOPI]], %{{.*}} : !torch.vtensor<[2,2],si32>, !torch.int -> !torch.vtensor<[2,2],f32>
// CHECK:         %[[A0:.*]] = torch.aten.to.dtype %[[TOP]], %{{.*}} -> !torch.vtensor<[2,2],bf16>
// CHECK:         %[[REST:.*]] = torch.aten.sub.Tensor %[[X]], %[[TOP]]
// CHECK:         %[[A1:.*]] = torch.aten.to.dtype %[[REST]], %{{.*}} -> !torch.vtensor<[2,2],bf16>
// CHECK:         %[[AS:.*]] = torch.prim.ListConstruct %[[A0]], %[[A0]], %[[A1]]
// CHECK:         %[[A:.*]] = torch.aten.cat %[[AS]], %{{.*}} -> !torch.vtensor<[2,6],bf16>
// CHECK:         %[[Y:.*]] = torch.aten.mm %[[A]], %[[W]] : !torch.vtensor<[2,6],bf16>, !torch.vtensor<[6,3],bf16> -> !torch.vtensor<[2,3],f32>
// CHECK:         return %[[Y]]
// SIX-LABEL:   func.func @linear(
// SIX:           torch.vtensor.literal(dense_resource<effc_split_weight> : tensor<12x3xbf16>)
// SIX:           torch.prim.ListConstruct %[[A0:.*]], %[[A0]], %[[A1:.*]], %[[A0]], %[[A1]], %[[A2:[^ ]*]] :
// SIX:           torch.aten.mm %{{.*}} : !torch.vtensor<[2,12],bf16>, !torch.vtensor<[12,3],bf16> -> !torch.vtensor<[2,3],f32>
func.func @linear(%x: !torch.vtensor<[2,2],f32>) -> !torch.vtensor<[2,3],f32> {
  %w = torch.vtensor.literal(dense<[[1.00390625, 3.0], [-2.0, 1.0e-3], [0.1, 7.0]]> : tensor<3x2xf32>) : !torch.vtensor<[3,2],f32>
  %wt = torch.aten.t %w : !torch.vtensor<[3,2],f32> -> !torch.vtensor<[2,3],f32>
  %y = torch.aten.mm %x, %wt : !torch.vtensor<[2,2],f32>, !torch.vtensor<[2,3],f32> -> !torch.vtensor<[2,3],f32>
  return %y : !torch.vtensor<[2,3],f32>
}

// Attention's scores: both operands split at run time; K is q's last axis and k's second to last. q, read by two
// matmuls, is split once.
// CHECK-LABEL: func.func @scores(
// CHECK-SAME:    %[[Q:[^:]*]]: !torch.vtensor<[2,4,8],f32>, %[[K:[^:]*]]: !torch.vtensor<[2,8,4],f32>
// CHECK:         %[[QS:.*]] = torch.aten.cat %{{.*}}, %int2 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[2,4,24],bf16>
// CHECK:         %[[KS:.*]] = torch.aten.cat %{{.*}}, %int1 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[2,24,4],bf16>
// CHECK:         %[[S:.*]] = torch.aten.bmm %[[QS]], %[[KS]] : !torch.vtensor<[2,4,24],bf16>, !torch.vtensor<[2,24,4],bf16> -> !torch.vtensor<[2,4,4],f32>
// CHECK-NOT:     torch.aten.view.dtype %[[Q]]
// CHECK:         torch.aten.bmm %[[QS]], %{{.*}} -> !torch.vtensor<[2,4,4],f32>
func.func @scores(%q: !torch.vtensor<[2,4,8],f32>, %k: !torch.vtensor<[2,8,4],f32>, %k2: !torch.vtensor<[2,8,4],f32>) -> (!torch.vtensor<[2,4,4],f32>, !torch.vtensor<[2,4,4],f32>) {
  %s = torch.aten.bmm %q, %k : !torch.vtensor<[2,4,8],f32>, !torch.vtensor<[2,8,4],f32> -> !torch.vtensor<[2,4,4],f32>
  %s2 = torch.aten.bmm %q, %k2 : !torch.vtensor<[2,4,8],f32>, !torch.vtensor<[2,8,4],f32> -> !torch.vtensor<[2,4,4],f32>
  return %s, %s2 : !torch.vtensor<[2,4,4],f32>, !torch.vtensor<[2,4,4],f32>
}

// An f16 matmul is left as it is.
func.func @half(%x: !torch.vtensor<[2,2],f16>, %w: !torch.vtensor<[2,2],f16>) -> !torch.vtensor<[2,2],f16> {
  %y = torch.aten.mm %x, %w : !torch.vtensor<[2,2],f16>, !torch.vtensor<[2,2],f16> -> !torch.vtensor<[2,2],f16>
  return %y : !torch.vtensor<[2,2],f16>
}

// The weight's pieces, of Wᵀ = [[1.00390625, -2.0, 0.1], [3.0, 1e-3, 7.0]]: its top bits (1.0 0x3F80, -2.0 0xC000,
// 0.099609375 0x3DCC, 3.0 0x4040, 0.00099945068 0x3A83, 7.0 0x40E0), what is left rounded to nearest (2^-8 0x3B80,
// 0, 0.000390625 0x39CD, 0, 5.5e-7 0x3513, 0), then the top bits again: little-endian, after the alignment word.
// CHECK:       effc_split_weight: "0x02000000803F00C0CC3D4040833AE040803B0000CD39000013350000803F00C0CC3D4040833AE040"

// -----

// Dynamic shapes are left.
// CHECK:       module attributes {effc.split_bf16 = "0/1 f32 matmuls as 3 bf16 products; left: dynamic shape (1)"}
func.func @dynamic(%x: !torch.vtensor<[?,2],f32>, %w: !torch.vtensor<[2,2],f32>) -> !torch.vtensor<[?,2],f32> {
  %y = torch.aten.mm %x, %w : !torch.vtensor<[?,2],f32>, !torch.vtensor<[2,2],f32> -> !torch.vtensor<[?,2],f32>
  return %y : !torch.vtensor<[?,2],f32>
}
