// effc-vnni-matmul: an int8 x int8 -> int32 aten.mm by an int8 constant (effc-quantize-dynamic's form) whose shape fits
// the kernel's tiles (columns a multiple of 64, K of 64; any rows) becomes a call of @effc_vnni_qgemm_MxNxK, declared
// once per shape, with the weights packed for the kernel: u8 (w + 128) in panels [N/32][K/4][32][4], flattened. The
// definitions (a flow.dispatch of effc's AVX512-VNNI kernel) are added as text when the module goes to iree-compile.
// Matmuls that are not int8, by activations, or of other shapes are left, counted by reason in effc.vnni_matmul.

// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-vnni-matmul)' | FileCheck %s

// effc-profile counts a kernel call as the matmul it is: 2 * 8 * 64 * 64 FLOPs, reading the rows and the packed weights.
// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-vnni-matmul,effc-profile)' | FileCheck %s --check-prefix=PROFILE
// PROFILE-LABEL: func.func @fits(
// PROFILE:         call @effc_vnni_qgemm_8x64x64({{.*}}) {effc.bytes_read = 4608 : i64, effc.bytes_written = 2048 : i64, {{.*}}effc.flops = 65536 : i64, {{.*}}effc.op_class = "linear"}

// CHECK: module attributes {effc.vnni_matmul = "3/6 matmuls on effc's AVX512-VNNI int8 kernel; left: not int8 x int8 -> int32 (1), shape not a multiple of the kernel's tiles (columns 64, K 64) (1), weight not an int8 constant (1)"}

// CHECK-LABEL: func.func @fits(
// CHECK-SAME:    %[[X:.*]]: !torch.vtensor<[8,64],si8>
// CHECK:         %[[W:.*]] = torch.vtensor.literal(dense_resource<effc_vnni_weight> : tensor<4096xsi8>) : !torch.vtensor<[4096],si8>
// CHECK-NEXT:    %[[Y:.*]] = call @effc_vnni_qgemm_8x64x64(%[[X]], %[[W]]) : (!torch.vtensor<[8,64],si8>, !torch.vtensor<[4096],si8>) -> !torch.vtensor<[8,64],si32>
// CHECK-NEXT:    return %[[Y]]
func.func @fits(%x: !torch.vtensor<[8,64],si8>) -> !torch.vtensor<[8,64],si32> {
  %w = torch.vtensor.literal(dense<3> : tensor<64x64xsi8>) : !torch.vtensor<[64,64],si8>
  %y = torch.aten.mm %x, %w : !torch.vtensor<[8,64],si8>, !torch.vtensor<[64,64],si8> -> !torch.vtensor<[8,64],si32>
  return %y : !torch.vtensor<[8,64],si32>
}

// The same shape calls the same declaration, with its own weights.
// CHECK-LABEL: func.func @same_shape(
// CHECK:         torch.vtensor.literal(dense_resource<effc_vnni_weight_1> : tensor<4096xsi8>)
// CHECK-NEXT:    call @effc_vnni_qgemm_8x64x64(
func.func @same_shape(%x: !torch.vtensor<[8,64],si8>) -> !torch.vtensor<[8,64],si32> {
  %w = torch.vtensor.literal(dense<-2> : tensor<64x64xsi8>) : !torch.vtensor<[64,64],si8>
  %y = torch.aten.mm %x, %w : !torch.vtensor<[8,64],si8>, !torch.vtensor<[64,64],si8> -> !torch.vtensor<[8,64],si32>
  return %y : !torch.vtensor<[8,64],si32>
}

// Rows need not fill the kernel's 8-row tiles (a decode step has one): 5 rows are rewritten too.
// CHECK-LABEL: func.func @odd_rows(
// CHECK:         call @effc_vnni_qgemm_5x64x64(
func.func @odd_rows(%x: !torch.vtensor<[5,64],si8>) -> !torch.vtensor<[5,64],si32> {
  %w = torch.vtensor.literal(dense<1> : tensor<64x64xsi8>) : !torch.vtensor<[64,64],si8>
  %y = torch.aten.mm %x, %w : !torch.vtensor<[5,64],si8>, !torch.vtensor<[64,64],si8> -> !torch.vtensor<[5,64],si32>
  return %y : !torch.vtensor<[5,64],si32>
}

// 32 columns: not a multiple of a workgroup's 64.
// CHECK-LABEL: func.func @narrow(
// CHECK:         torch.aten.mm
// CHECK-NOT:     call
func.func @narrow(%x: !torch.vtensor<[8,64],si8>) -> !torch.vtensor<[8,32],si32> {
  %w = torch.vtensor.literal(dense<3> : tensor<64x32xsi8>) : !torch.vtensor<[64,32],si8>
  %y = torch.aten.mm %x, %w : !torch.vtensor<[8,64],si8>, !torch.vtensor<[64,32],si8> -> !torch.vtensor<[8,32],si32>
  return %y : !torch.vtensor<[8,32],si32>
}

// CHECK-LABEL: func.func @f32(
// CHECK:         torch.aten.mm
func.func @f32(%x: !torch.vtensor<[8,64],f32>, %w: !torch.vtensor<[64,64],f32>) -> !torch.vtensor<[8,64],f32> {
  %y = torch.aten.mm %x, %w : !torch.vtensor<[8,64],f32>, !torch.vtensor<[64,64],f32> -> !torch.vtensor<[8,64],f32>
  return %y : !torch.vtensor<[8,64],f32>
}

// CHECK-LABEL: func.func @activations(
// CHECK:         torch.aten.mm
func.func @activations(%x: !torch.vtensor<[8,64],si8>, %w: !torch.vtensor<[64,64],si8>) -> !torch.vtensor<[8,64],si32> {
  %y = torch.aten.mm %x, %w : !torch.vtensor<[8,64],si8>, !torch.vtensor<[64,64],si8> -> !torch.vtensor<[8,64],si32>
  return %y : !torch.vtensor<[8,64],si32>
}

// CHECK:       func.func private @effc_vnni_qgemm_8x64x64(!torch.vtensor<[8,64],si8>, !torch.vtensor<[4096],si8>) -> !torch.vtensor<[8,64],si32>
// CHECK:       func.func private @effc_vnni_qgemm_5x64x64(!torch.vtensor<[5,64],si8>, !torch.vtensor<[4096],si8>) -> !torch.vtensor<[5,64],si32>
// CHECK-NOT:   func.func private
