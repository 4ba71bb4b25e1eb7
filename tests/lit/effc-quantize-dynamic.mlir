// effc-quantize-dynamic: an f32 matmul by a constant weight becomes an int8 x int8 -> int32 matmul. The pass
// quantizes the weight per output column (max|w| / 127) into int8 and f32 blobs, the activation per row at run time
// (max|x| / 127; x times its reciprocal, rounded half to even by adding and subtracting 1.5 * 2^23), once per
// activation however many matmuls read it; the int32 product is scaled back by both scales. Matmuls of two
// activations, batched weights and non-f32 matmuls are left, counted by reason in the module attribute
// effc.quantize_dynamic. aten.linear and aten.matmul (IR that kept them) flatten their rows around the same form, and
// so does aten.bmm by a weight broadcast over the batch (how torch-mlir imports a Linear on transposed heads).

// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-quantize-dynamic)' | FileCheck %s

// With smooth=FILE (SmoothQuant), each input channel j of a matmul whose weight the file knows (by the fingerprint of
// its values as nn.Linear stores them, [N, K]) is divided by s_j = max|x_j|^alpha / max|w_j|^(1-alpha) before the
// rows are quantized, and the weight's row j is multiplied by s_j before its columns are. The file gives @linear's
// weight input peaks [16, 4, 0.25]; its rows' peaks are [1, 4, 1], so at alpha 0.5 s = [4, 1, 0.5].
// @linear3d, @transpose_int, @direct and @shared_input hold the same weight; @shared_input's other weight reads the
// same input, so it shares s and the input is still quantized once.
// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-quantize-dynamic{smooth=%S/Inputs/int8-smoothing.json alpha=0.5})' \
// RUN:   | FileCheck %s --check-prefix=SMOOTH
// SMOOTH:       module attributes {effc.quantize_dynamic = "7/10 matmuls by constant weights in int8, 7 smoothed (alpha 0.5); left: not f32 (1), weight not a constant (1), weight not a matrix (1)"}
// SMOOTH-LABEL: func.func @linear(
// SMOOTH-SAME:    %[[X:.*]]: !torch.vtensor<[4,3],f32>
// SMOOTH:         %[[INV:.*]] = torch.vtensor.literal(dense_resource<effc_int8_smoothing> : tensor<3xf32>)
// SMOOTH-NEXT:    %[[XS:.*]] = torch.aten.mul.Tensor %[[X]], %[[INV]]
// SMOOTH-NEXT:    torch.aten.abs %[[XS]]
// SMOOTH:         torch.aten.mul.Tensor %[[XS]],
// SMOOTH-LABEL: func.func @half(
// SMOOTH-NOT:     effc_int8_smoothing
// SMOOTH-LABEL: func.func @linear3d(
// SMOOTH:         effc_int8_smoothing
// SMOOTH-LABEL: func.func @shared_input(
// SMOOTH:         %[[ROWS:.*]] = torch.aten.view %{{.*}} -> !torch.vtensor<[8,3],f32>
// SMOOTH:         %[[XS:.*]] = torch.aten.mul.Tensor %[[ROWS]], %{{.*}} : !torch.vtensor<[8,3],f32>, !torch.vtensor<[3],f32>
// SMOOTH:         %[[XQ:.*]] = torch.aten.to.dtype {{.*}} -> !torch.vtensor<[8,3],si8>
// SMOOTH-NOT:     torch.aten.abs
// SMOOTH:         torch.aten.mm %[[XQ]], %{{.*}} -> !torch.vtensor<[8,2],si32>
// SMOOTH-NOT:     torch.aten.abs
// SMOOTH:         torch.aten.mm %[[XQ]], %{{.*}} -> !torch.vtensor<[8,2],si32>
// 1/s = [0.25, 1, 2] in f32. @linear's weight [K, N] [[1, 0.25], [-2, 4], [0.5, -1]] times s per row is
// [[4, 1], [-2, 4], [0.25, -0.5]]; both column scales are 4/127 (0x3D010204), so it is [[127, 32], [-64, 127], [8, -16]]
// (-63.5 rounds to even, -64). @shared_input's second weight [[0.5, 1], [2, -4], [1, 0.5]] becomes [[2, 4], [2, -4],
// [0.5, 0.25]]: scales 2/127 and 4/127, values [[127, 127], [127, -127], [32, 8]].
// SMOOTH:         effc_int8_smoothing: "0x040000000000803E0000803F00000040"
// SMOOTH-NEXT:    effc_int8_weight: "0x010000007F20C07F08F0"
// SMOOTH-NEXT:    effc_int8_scale: "0x040000000402013D0402013D"
// SMOOTH:         effc_int8_weight_5: "0x010000007F7F7F812008"
// SMOOTH-NEXT:    effc_int8_scale_5: "0x040000000402813C0402013D"

// CHECK:       module attributes {effc.quantize_dynamic = "7/10 matmuls by constant weights in int8; left: not f32 (1), weight not a constant (1), weight not a matrix (1)"}
// nn.Linear as torch-mlir imports it: mm by the permuted weight literal.
// CHECK-LABEL: func.func @linear(
// CHECK-SAME:    %[[X:.*]]: !torch.vtensor<[4,3],f32>
// CHECK-NOT:     torch.aten.permute
// The activation's scale: max |x| over each row, / 127; to.dtype's 1 is int8, 6 is f32.
// CHECK:         %[[XABS:.*]] = torch.aten.abs %[[X]]
// CHECK-NEXT:    %[[ONE:.*]] = torch.constant.int 1
// CHECK:         %[[XMAX:.*]] = torch.aten.amax %[[XABS]], {{.*}} -> !torch.vtensor<[4,1],f32>
// CHECK:         %[[XFLOOR:.*]] = torch.aten.clamp_min %[[XMAX]]
// CHECK:         %[[XSCALE:.*]] = torch.aten.div.Scalar %[[XFLOOR]], %{{.*}} -> !torch.vtensor<[4,1],f32>
// CHECK:         %[[SPREAD:.*]] = torch.aten.broadcast_to %[[XSCALE]], {{.*}} -> !torch.vtensor<[4,3],f32>
// CHECK-NEXT:    %[[XINV:.*]] = torch.aten.reciprocal %[[SPREAD]] : !torch.vtensor<[4,3],f32> -> !torch.vtensor<[4,3],f32>
// CHECK-NEXT:    %[[XMUL:.*]] = torch.aten.mul.Tensor %[[X]], %[[XINV]]
// CHECK-NEXT:    %[[SHIFT:.*]] = torch.constant.float 0x4168000000000000
// CHECK:         %[[XSHIFTED:.*]] = torch.aten.add.Scalar %[[XMUL]], %[[SHIFT]]
// CHECK-NEXT:    %[[XROUND:.*]] = torch.aten.sub.Scalar %[[XSHIFTED]], %[[SHIFT]]
// CHECK:         %[[XQ:.*]] = torch.aten.to.dtype %[[XROUND]], %[[ONE]], {{.*}} -> !torch.vtensor<[4,3],si8>
// The weight, transposed to [K, N] and quantized by the pass (its values are checked at the end of this file).
// CHECK-NOT:     torch.aten.abs
// CHECK:         %[[WQ:.*]] = torch.vtensor.literal(dense_resource<effc_int8_weight> : tensor<3x2xsi8>) : !torch.vtensor<[3,2],si8>
// CHECK-NEXT:    %[[WSCALE:.*]] = torch.vtensor.literal(dense_resource<effc_int8_scale> : tensor<1x2xf32>) : !torch.vtensor<[1,2],f32>
// CHECK:         %[[ACC:.*]] = torch.aten.mm %[[XQ]], %[[WQ]] : !torch.vtensor<[4,3],si8>, !torch.vtensor<[3,2],si8> -> !torch.vtensor<[4,2],si32>
// CHECK-NEXT:    %[[F32:.*]] = torch.constant.int 6
// CHECK:         %[[F:.*]] = torch.aten.to.dtype %[[ACC]], %[[F32]], {{.*}} -> !torch.vtensor<[4,2],f32>
// CHECK:         %[[ROWS:.*]] = torch.aten.mul.Tensor %[[F]], %[[XSCALE]]
// CHECK:         %[[Y:.*]] = torch.aten.mul.Tensor %[[ROWS]], %[[WSCALE]]
// CHECK-NOT:     torch.aten.mm {{.*}}f32>
// CHECK:         return %[[Y]]
func.func @linear(%x: !torch.vtensor<[4,3],f32>) -> !torch.vtensor<[4,2],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %w = torch.vtensor.literal(dense<[[1.0, -2.0, 0.5], [0.25, 4.0, -1.0]]> : tensor<2x3xf32>) : !torch.vtensor<[2,3],f32>
  %dims = torch.prim.ListConstruct %int1, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %wt = torch.aten.permute %w, %dims : !torch.vtensor<[2,3],f32>, !torch.list<int> -> !torch.vtensor<[3,2],f32>
  %y = torch.aten.mm %x, %wt : !torch.vtensor<[4,3],f32>, !torch.vtensor<[3,2],f32> -> !torch.vtensor<[4,2],f32>
  return %y : !torch.vtensor<[4,2],f32>
}

// Both operands computed at run time: nothing to quantize ahead of time.
// CHECK-LABEL: func.func @activations(
// CHECK:         torch.aten.mm %{{.*}}, %{{.*}} : !torch.vtensor<[4,3],f32>, !torch.vtensor<[3,2],f32> -> !torch.vtensor<[4,2],f32>
// CHECK-NOT:     si8
func.func @activations(%a: !torch.vtensor<[4,3],f32>, %b: !torch.vtensor<[3,2],f32>) -> !torch.vtensor<[4,2],f32> {
  %y = torch.aten.mm %a, %b : !torch.vtensor<[4,3],f32>, !torch.vtensor<[3,2],f32> -> !torch.vtensor<[4,2],f32>
  return %y : !torch.vtensor<[4,2],f32>
}

// f16 weights are left alone (the pass quantizes f32 models, as torch.ao's dynamic quantization does).
// CHECK-LABEL: func.func @half(
// CHECK:         torch.aten.mm %{{.*}}, %{{.*}} : !torch.vtensor<[4,3],f16>, !torch.vtensor<[3,2],f16> -> !torch.vtensor<[4,2],f16>
// CHECK-NOT:     si8
func.func @half(%x: !torch.vtensor<[4,3],f16>) -> !torch.vtensor<[4,2],f16> {
  %w = torch.vtensor.literal(dense<1.0> : tensor<3x2xf16>) : !torch.vtensor<[3,2],f16>
  %y = torch.aten.mm %x, %w : !torch.vtensor<[4,3],f16>, !torch.vtensor<[3,2],f16> -> !torch.vtensor<[4,2],f16>
  return %y : !torch.vtensor<[4,2],f16>
}

// aten.linear on a 3-D activation: rows flattened to [8,3], the [N,K] weight transposed to [K,N], the product viewed
// back to [2,4,2], then the bias added.
// CHECK-LABEL: func.func @linear3d(
// CHECK-SAME:    %[[X:.*]]: !torch.vtensor<[2,4,3],f32>
// CHECK:         %[[B:.*]] = torch.vtensor.literal({{.*}} : tensor<2xf32>)
// CHECK:         %[[ROWS:.*]] = torch.aten.view %[[X]], {{.*}} -> !torch.vtensor<[8,3],f32>
// CHECK:         torch.aten.abs %[[ROWS]]
// CHECK:         torch.vtensor.literal(dense_resource<effc_int8_weight_1> : tensor<3x2xsi8>)
// CHECK:         %[[ACC:.*]] = torch.aten.mm {{.*}} : !torch.vtensor<[8,3],si8>, !torch.vtensor<[3,2],si8> -> !torch.vtensor<[8,2],si32>
// CHECK:         torch.aten.mul.Tensor {{.*}} -> !torch.vtensor<[8,2],f32>
// CHECK-NEXT:    %[[Y2:.*]] = torch.aten.mul.Tensor {{.*}} -> !torch.vtensor<[8,2],f32>
// CHECK:         %[[Y:.*]] = torch.aten.view %[[Y2]], {{.*}} -> !torch.vtensor<[2,4,2],f32>
// CHECK:         %[[OUT:.*]] = torch.aten.add.Tensor %[[Y]], %[[B]], {{.*}} -> !torch.vtensor<[2,4,2],f32>
// CHECK-NOT:     torch.aten.linear
// CHECK:         return %[[OUT]]
func.func @linear3d(%x: !torch.vtensor<[2,4,3],f32>) -> !torch.vtensor<[2,4,2],f32> {
  %w = torch.vtensor.literal(dense<[[1.0, -2.0, 0.5], [0.25, 4.0, -1.0]]> : tensor<2x3xf32>) : !torch.vtensor<[2,3],f32>
  %b = torch.vtensor.literal(dense<[0.5, -0.5]> : tensor<2xf32>) : !torch.vtensor<[2],f32>
  %y = torch.aten.linear %x, %w, %b : !torch.vtensor<[2,4,3],f32>, !torch.vtensor<[2,3],f32>, !torch.vtensor<[2],f32> -> !torch.vtensor<[2,4,2],f32>
  return %y : !torch.vtensor<[2,4,2],f32>
}

// The same weight as @linear's, reached through aten.transpose.int, and as a [K, N] literal used directly: both give
// @linear's int8 blob (checked at the end of this file).
// CHECK-LABEL: func.func @transpose_int(
// CHECK:         torch.vtensor.literal(dense_resource<effc_int8_weight_2> : tensor<3x2xsi8>)
// CHECK-NOT:     torch.aten.transpose.int
func.func @transpose_int(%x: !torch.vtensor<[4,3],f32>) -> !torch.vtensor<[4,2],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %w = torch.vtensor.literal(dense<[[1.0, -2.0, 0.5], [0.25, 4.0, -1.0]]> : tensor<2x3xf32>) : !torch.vtensor<[2,3],f32>
  %wt = torch.aten.transpose.int %w, %int0, %int1 : !torch.vtensor<[2,3],f32>, !torch.int, !torch.int -> !torch.vtensor<[3,2],f32>
  %y = torch.aten.mm %x, %wt : !torch.vtensor<[4,3],f32>, !torch.vtensor<[3,2],f32> -> !torch.vtensor<[4,2],f32>
  return %y : !torch.vtensor<[4,2],f32>
}

// CHECK-LABEL: func.func @direct(
// CHECK:         torch.vtensor.literal(dense_resource<effc_int8_weight_3> : tensor<3x2xsi8>)
func.func @direct(%x: !torch.vtensor<[4,3],f32>) -> !torch.vtensor<[4,2],f32> {
  %w = torch.vtensor.literal(dense<[[1.0, 0.25], [-2.0, 4.0], [0.5, -1.0]]> : tensor<3x2xf32>) : !torch.vtensor<[3,2],f32>
  %y = torch.aten.mm %x, %w : !torch.vtensor<[4,3],f32>, !torch.vtensor<[3,2],f32> -> !torch.vtensor<[4,2],f32>
  return %y : !torch.vtensor<[4,2],f32>
}

// Two projections of one activation, each through a view of its own (as torch-mlir imports Q, K and V): its rows are
// quantized once, and both int8 matmuls read the same values and scales.
// CHECK-LABEL: func.func @shared_input(
// CHECK:         %[[ROWS:.*]] = torch.aten.view %{{.*}} -> !torch.vtensor<[8,3],f32>
// CHECK:         torch.aten.abs %[[ROWS]]
// CHECK:         %[[SCALE:.*]] = torch.aten.div.Scalar
// CHECK:         %[[XQ:.*]] = torch.aten.to.dtype {{.*}} -> !torch.vtensor<[8,3],si8>
// CHECK-NOT:     torch.aten.abs
// CHECK:         torch.aten.mm %[[XQ]], %{{.*}} -> !torch.vtensor<[8,2],si32>
// CHECK:         torch.aten.mul.Tensor %{{.*}}, %[[SCALE]]
// CHECK-NOT:     torch.aten.abs
// CHECK:         torch.aten.mm %[[XQ]], %{{.*}} -> !torch.vtensor<[8,2],si32>
// CHECK:         torch.aten.mul.Tensor %{{.*}}, %[[SCALE]]
func.func @shared_input(%x: !torch.vtensor<[2,4,3],f32>) -> (!torch.vtensor<[8,2],f32>, !torch.vtensor<[8,2],f32>) {
  %int8 = torch.constant.int 8
  %int3 = torch.constant.int 3
  %shape = torch.prim.ListConstruct %int8, %int3 : (!torch.int, !torch.int) -> !torch.list<int>
  %wq = torch.vtensor.literal(dense<[[1.0, 0.25], [-2.0, 4.0], [0.5, -1.0]]> : tensor<3x2xf32>) : !torch.vtensor<[3,2],f32>
  %wk = torch.vtensor.literal(dense<[[0.5, 1.0], [2.0, -4.0], [1.0, 0.5]]> : tensor<3x2xf32>) : !torch.vtensor<[3,2],f32>
  %xq_rows = torch.aten.view %x, %shape : !torch.vtensor<[2,4,3],f32>, !torch.list<int> -> !torch.vtensor<[8,3],f32>
  %q = torch.aten.mm %xq_rows, %wq : !torch.vtensor<[8,3],f32>, !torch.vtensor<[3,2],f32> -> !torch.vtensor<[8,2],f32>
  %xk_rows = torch.aten.view %x, %shape : !torch.vtensor<[2,4,3],f32>, !torch.list<int> -> !torch.vtensor<[8,3],f32>
  %k = torch.aten.mm %xk_rows, %wk : !torch.vtensor<[8,3],f32>, !torch.vtensor<[3,2],f32> -> !torch.vtensor<[8,2],f32>
  return %q, %k : !torch.vtensor<[8,2],f32>, !torch.vtensor<[8,2],f32>
}

// A constant batch of weights (one matrix per batch) is not one weight matrix: left.
// CHECK-LABEL: func.func @batched(
// CHECK:         torch.aten.matmul %{{.*}}, %{{.*}} : !torch.vtensor<[2,4,3],f32>, !torch.vtensor<[2,3,2],f32> -> !torch.vtensor<[2,4,2],f32>
// CHECK-NOT:     si8
func.func @batched(%x: !torch.vtensor<[2,4,3],f32>) -> !torch.vtensor<[2,4,2],f32> {
  %w = torch.vtensor.literal(dense<1.0> : tensor<2x3x2xf32>) : !torch.vtensor<[2,3,2],f32>
  %y = torch.aten.matmul %x, %w : !torch.vtensor<[2,4,3],f32>, !torch.vtensor<[2,3,2],f32> -> !torch.vtensor<[2,4,2],f32>
  return %y : !torch.vtensor<[2,4,2],f32>
}

// nn.Linear on a non-contiguous 3-D input (attention's output with its heads transposed back) imports as bmm by the
// weight broadcast over the batch: one matrix, so the rows are flattened to [8,3] as for @linear3d. Its blob is
// @linear's (checked at the end of this file).
// CHECK-LABEL: func.func @broadcast_weight(
// CHECK-SAME:    %[[X:.*]]: !torch.vtensor<[2,4,3],f32>
// CHECK:         %[[ROWS:.*]] = torch.aten.view %[[X]], {{.*}} -> !torch.vtensor<[8,3],f32>
// CHECK:         torch.aten.abs %[[ROWS]]
// CHECK:         torch.vtensor.literal(dense_resource<effc_int8_weight_6> : tensor<3x2xsi8>)
// CHECK:         torch.aten.mm {{.*}} : !torch.vtensor<[8,3],si8>, !torch.vtensor<[3,2],si8> -> !torch.vtensor<[8,2],si32>
// CHECK:         %[[Y:.*]] = torch.aten.view {{.*}} -> !torch.vtensor<[2,4,2],f32>
// CHECK-NOT:     torch.aten.bmm
// CHECK:         return %[[Y]]
func.func @broadcast_weight(%x: !torch.vtensor<[2,4,3],f32>) -> !torch.vtensor<[2,4,2],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %w = torch.vtensor.literal(dense<[[1.0, -2.0, 0.5], [0.25, 4.0, -1.0]]> : tensor<2x3xf32>) : !torch.vtensor<[2,3],f32>
  %dims = torch.prim.ListConstruct %int1, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %wt = torch.aten.permute %w, %dims : !torch.vtensor<[2,3],f32>, !torch.list<int> -> !torch.vtensor<[3,2],f32>
  %shape = torch.prim.ListConstruct %int2, %int3, %int2 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %wb = torch.aten.broadcast_to %wt, %shape : !torch.vtensor<[3,2],f32>, !torch.list<int> -> !torch.vtensor<[2,3,2],f32>
  %wv = torch.aten.view %wb, %shape : !torch.vtensor<[2,3,2],f32>, !torch.list<int> -> !torch.vtensor<[2,3,2],f32>
  %y = torch.aten.bmm %x, %wv : !torch.vtensor<[2,4,3],f32>, !torch.vtensor<[2,3,2],f32> -> !torch.vtensor<[2,4,2],f32>
  return %y : !torch.vtensor<[2,4,2],f32>
}

// A batch matmul of two activations (attention's q·kᵀ) is not a site at all: it is not counted in the report.
// CHECK-LABEL: func.func @scores(
// CHECK:         torch.aten.bmm %{{.*}}, %{{.*}} : !torch.vtensor<[2,4,3],f32>, !torch.vtensor<[2,3,4],f32> -> !torch.vtensor<[2,4,4],f32>
// CHECK-NOT:     si8
func.func @scores(%q: !torch.vtensor<[2,4,3],f32>, %k: !torch.vtensor<[2,3,4],f32>) -> !torch.vtensor<[2,4,4],f32> {
  %y = torch.aten.bmm %q, %k : !torch.vtensor<[2,4,3],f32>, !torch.vtensor<[2,3,4],f32> -> !torch.vtensor<[2,4,4],f32>
  return %y : !torch.vtensor<[2,4,4],f32>
}

// The weights' blobs: a 4-byte alignment header, then the data. @linear's weight transposed to [K, N] is
// [[1, 0.25], [-2, 4], [0.5, -1]]; its column scales 2/127 and 4/127 (f32 0x3C810204, 0x3D010204) make it
// [[64, 8], [-127, 127], [32, -32]] (63.5 rounds to even, 64). The later functions' are the same matrix.
// CHECK:         dialect_resources
// CHECK:         effc_int8_weight: "0x010000004008817F20E0"
// CHECK-NEXT:    effc_int8_scale: "0x040000000402813C0402013D"
// CHECK-NEXT:    effc_int8_weight_1: "0x010000004008817F20E0"
// CHECK:         effc_int8_weight_2: "0x010000004008817F20E0"
// CHECK:         effc_int8_weight_3: "0x010000004008817F20E0"
// CHECK:         effc_int8_weight_6: "0x010000004008817F20E0"
