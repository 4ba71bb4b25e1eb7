// effc-profile: FLOPs as torch.utils.flop_counter counts them, bytes, intensity, op class and the
// roofline time on a device, per torch op, plus module totals and class shares.

// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-profile{target=h100-sxm})' | FileCheck %s
// Rerunning replaces every annotation (the a100 run's times and shares leave no trace):
// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-profile{target=a100},effc-profile{target=h100-sxm})' \
// RUN:   | FileCheck %s
// RUN: not effc-opt %s --pass-pipeline='builtin.module(effc-profile{target=h100})' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=UNKNOWN
// RUN: not effc-opt %s --pass-pipeline='builtin.module(effc-profile{memory-efficiency=1.5})' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=EFFICIENCY

// UNKNOWN: effc: error: unknown hardware target 'h100'; did you mean a100, h100-sxm? (known: host-cpu, a100, h100-sxm, h200-sxm)
// EFFICIENCY: effc: error: pass 'effc-profile': option 'memory-efficiency' must be in (0, 1], got 1.5

// FLOPs: 8192 (mm) + 13824 (conv) + 4096 (transposed conv) + 4096 (bmm) + 65536 + 16384 (sdpa). Bytes:
// 3584 + 2048 + 2048 + 2048 (transpose) + 2224 + 3200 + 3072 + 65536 + 4096; views and folded ops 0.
// CHECK:      module attributes {
// CHECK-SAME: effc.profile.class_share = {attention = {{[0-9.eE+-]+}} : f64, convolution = {{[0-9.eE+-]+}} : f64, data_movement = {{[0-9.eE+-]+}} : f64, elementwise = 0.000000e+00 : f64, linear = {{[0-9.eE+-]+}} : f64, normalization = {{[0-9.eE+-]+}} : f64, other = 0.000000e+00 : f64}
// CHECK-SAME: effc.profile.subclass_share = {temporal_attention = {{[0-9.eE+-]+}} : f64}
// CHECK-SAME: effc.profile.target = "h100-sxm"
// CHECK-SAME: effc.profile.total_bytes = 87856 : i64
// CHECK-SAME: effc.profile.total_flops = 112128 : i64
// CHECK-SAME: effc.profile.total_flops_uncounted = 2560 : i64

// Constants, literals and lists are structure: no annotations.
// CHECK-LABEL: func.func @main
// CHECK:       torch.vtensor.literal(dense<1.000000e+00> : tensor<16x32xf32>) : !torch.vtensor<[16,32],f32>

// 2*8*16*32 FLOPs; reads 8x16 + 16x32 f32, writes 8x32; memory-bound on an H100: 3584 B / 3.35 TB/s.
// CHECK: torch.aten.mm %arg0, %{{.*}} {effc.bytes_read = 2560 : i64, effc.bytes_written = 1024 : i64, effc.est_time_s = 1.06985{{[0-9]*}}E-9 : f64, effc.flops = 8192 : i64, effc.flops_uncounted = 0 : i64, effc.intensity = 2.28571{{[0-9]*}} : f64, effc.op_class = "linear"}

// Softmax and layer_norm: normalization; torch counts no FLOPs, the roofline estimates 5 per element.
// CHECK: torch.aten.softmax.int {{.*}} {effc.bytes_read = 1024 : i64, effc.bytes_written = 1024 : i64, effc.est_time_s = {{.*}}, effc.flops = 0 : i64, effc.flops_uncounted = 1280 : i64, effc.intensity = 6.250000e-01 : f64, effc.op_class = "normalization"}
// CHECK: torch.aten.layer_norm {{.*}} effc.flops = 0 : i64, effc.flops_uncounted = 1280 : i64, {{.*}} effc.op_class = "normalization"}

// A view moves no data; a transpose is counted as a copy; a transposed weight is folded by IREE.
// CHECK: torch.aten.view {{.*}} {effc.bytes_read = 0 : i64, effc.bytes_written = 0 : i64, effc.est_time_s = 0.000000e+00 : f64, effc.flops = 0 : i64, effc.flops_uncounted = 0 : i64, effc.intensity = 0.000000e+00 : f64, effc.op_class = "data_movement"}
// CHECK: torch.aten.transpose.int {{.*}} {effc.bytes_read = 1024 : i64, effc.bytes_written = 1024 : i64, {{.*}} effc.op_class = "data_movement"}
// CHECK: torch.aten.transpose.int {{.*}} {effc.bytes_read = 0 : i64, effc.bytes_written = 0 : i64, effc.est_time_s = 0.000000e+00 : f64, effc.flops = 0 : i64, effc.flops_uncounted = 0 : i64, effc.folded, {{.*}} effc.op_class = "data_movement"}

// Convolution: 2 * batch * output positions * weight elements; transposed: input positions instead.
// CHECK: torch.aten.convolution %arg1, {{.*}} effc.flops = 13824 : i64, {{.*}} effc.op_class = "convolution"}
// CHECK: torch.aten.convolution {{.*}} effc.flops = 4096 : i64, {{.*}} effc.op_class = "convolution"}

// A bmm of two activations is attention (heads folded in the batch: never temporal).
// CHECK: torch.aten.bmm {{.*}} effc.flops = 4096 : i64, {{.*}} effc.op_class = "attention", effc.seq_len = 8 : i64}

// sdpa: QK^T + PV. A batch of 64 sequences of 4 frames is temporal; 1 sequence of 16 positions is not.
// CHECK: torch.aten.scaled_dot_product_attention %arg2, {{.*}} effc.flops = 65536 : i64, {{.*}} effc.op_class = "attention", effc.op_subclass = "temporal_attention", effc.seq_len = 4 : i64}
// CHECK: torch.aten.scaled_dot_product_attention %arg3, {{.*}} effc.flops = 16384 : i64, {{.*}} effc.op_class = "attention", effc.seq_len = 16 : i64}
// CHECK: return

func.func @main(%x: !torch.vtensor<[8,16],f32>, %img: !torch.vtensor<[1,3,8,8],f32>, %q: !torch.vtensor<[64,2,4,8],f32>, %s: !torch.vtensor<[1,2,16,8],f32>) -> (!torch.vtensor<[8,32],f32>, !torch.vtensor<[8,32],f32>, !torch.vtensor<[64,4],f32>, !torch.vtensor<[1,2,16,16],f32>, !torch.vtensor<[4,8,8],f32>, !torch.vtensor<[64,2,4,8],f32>, !torch.vtensor<[1,2,16,8],f32>, !torch.vtensor<[32,16],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %int32 = torch.constant.int 32
  %int64 = torch.constant.int 64
  %int-1 = torch.constant.int -1
  %false = torch.constant.bool false
  %true = torch.constant.bool true
  %none = torch.constant.none
  %eps = torch.constant.float 1.000000e-05
  %zero = torch.constant.float 0.000000e+00
  %w = torch.vtensor.literal(dense<1.000000e+00> : tensor<16x32xf32>) : !torch.vtensor<[16,32],f32>
  %mm = torch.aten.mm %x, %w : !torch.vtensor<[8,16],f32>, !torch.vtensor<[16,32],f32> -> !torch.vtensor<[8,32],f32>
  %sm = torch.aten.softmax.int %mm, %int-1, %none : !torch.vtensor<[8,32],f32>, !torch.int, !torch.none -> !torch.vtensor<[8,32],f32>
  %shape32 = torch.prim.ListConstruct %int32 : (!torch.int) -> !torch.list<int>
  %ln = torch.aten.layer_norm %mm, %shape32, %none, %none, %eps, %false : !torch.vtensor<[8,32],f32>, !torch.list<int>, !torch.none, !torch.none, !torch.float, !torch.bool -> !torch.vtensor<[8,32],f32>
  %shape = torch.prim.ListConstruct %int4, %int64 : (!torch.int, !torch.int) -> !torch.list<int>
  %view = torch.aten.view %sm, %shape : !torch.vtensor<[8,32],f32>, !torch.list<int> -> !torch.vtensor<[4,64],f32>
  %t = torch.aten.transpose.int %view, %int0, %int1 : !torch.vtensor<[4,64],f32>, !torch.int, !torch.int -> !torch.vtensor<[64,4],f32>
  %wt = torch.aten.transpose.int %w, %int0, %int1 : !torch.vtensor<[16,32],f32>, !torch.int, !torch.int -> !torch.vtensor<[32,16],f32>
  %cw = torch.vtensor.literal(dense<1.000000e+00> : tensor<4x3x3x3xf32>) : !torch.vtensor<[4,3,3,3],f32>
  %ones = torch.prim.ListConstruct %int1, %int1 : (!torch.int, !torch.int) -> !torch.list<int>
  %twos = torch.prim.ListConstruct %int2, %int2 : (!torch.int, !torch.int) -> !torch.list<int>
  %zeros = torch.prim.ListConstruct %int0, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %conv = torch.aten.convolution %img, %cw, %none, %ones, %ones, %ones, %false, %zeros, %int1 : !torch.vtensor<[1,3,8,8],f32>, !torch.vtensor<[4,3,3,3],f32>, !torch.none, !torch.list<int>, !torch.list<int>, !torch.list<int>, !torch.bool, !torch.list<int>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %tw = torch.vtensor.literal(dense<1.000000e+00> : tensor<4x2x2x2xf32>) : !torch.vtensor<[4,2,2,2],f32>
  %up = torch.aten.convolution %conv, %tw, %none, %twos, %zeros, %ones, %true, %zeros, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[4,2,2,2],f32>, !torch.none, !torch.list<int>, !torch.list<int>, !torch.list<int>, !torch.bool, !torch.list<int>, !torch.int -> !torch.vtensor<[1,2,16,16],f32>
  %shape3 = torch.prim.ListConstruct %int4, %int8, %int8 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %a3 = torch.aten.view %mm, %shape3 : !torch.vtensor<[8,32],f32>, !torch.list<int> -> !torch.vtensor<[4,8,8],f32>
  %scores = torch.aten.bmm %a3, %a3 : !torch.vtensor<[4,8,8],f32>, !torch.vtensor<[4,8,8],f32> -> !torch.vtensor<[4,8,8],f32>
  %temporal = torch.aten.scaled_dot_product_attention %q, %q, %q, %none, %zero, %false, %none, %false : !torch.vtensor<[64,2,4,8],f32>, !torch.vtensor<[64,2,4,8],f32>, !torch.vtensor<[64,2,4,8],f32>, !torch.none, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[64,2,4,8],f32>
  %spatial = torch.aten.scaled_dot_product_attention %s, %s, %s, %none, %zero, %false, %none, %false : !torch.vtensor<[1,2,16,8],f32>, !torch.vtensor<[1,2,16,8],f32>, !torch.vtensor<[1,2,16,8],f32>, !torch.none, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,2,16,8],f32>
  return %sm, %ln, %t, %up, %scores, %temporal, %spatial, %wt : !torch.vtensor<[8,32],f32>, !torch.vtensor<[8,32],f32>, !torch.vtensor<[64,4],f32>, !torch.vtensor<[1,2,16,16],f32>, !torch.vtensor<[4,8,8],f32>, !torch.vtensor<[64,2,4,8],f32>, !torch.vtensor<[1,2,16,8],f32>, !torch.vtensor<[32,16],f32>
}
