// effc-split-projections: a fused Q/K/V projection whose result is only split becomes one projection
// per part on slices of the constant weight and bias; views and permutes are re-emitted per part with
// the split axis shrunk to one part. D=8, 2 heads of 4, 3 parts.

// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-split-projections)' | FileCheck %s

// AttentionBlock's form as imported: addmm decomposed to mm + alpha/beta scaling, then
// view(b, t, 3, H, d).permute(2, 0, 3, 1, 4) unbound by slice + squeeze.
// CHECK-LABEL: func.func @fused_qkv(
// CHECK-SAME:    %[[X:.*]]: !torch.vtensor<[2,3,8],f32>
// CHECK-DAG:     %[[W:.*]] = torch.vtensor.literal(dense<1.000000e+00> : tensor<24x8xf32>)
// CHECK-DAG:     %[[B:.*]] = torch.vtensor.literal(dense<2.000000e+00> : tensor<24xf32>)
// CHECK:         %[[X2:.*]] = torch.aten.view %[[X]]
// CHECK-NOT:     [6,24]
// CHECK:         %[[WQ:.*]] = torch.aten.slice.Tensor %[[W]], %{{.*}} -> !torch.vtensor<[8,8],f32>
// CHECK:         %[[WQT:.*]] = torch.aten.permute %[[WQ]]
// CHECK:         %[[MQ:.*]] = torch.aten.mm %[[X2]], %[[WQT]] : {{.*}} -> !torch.vtensor<[6,8],f32>
// CHECK:         torch.aten.slice.Tensor %[[B]], {{.*}} -> !torch.vtensor<[8],f32>
// CHECK:         %[[HQ:.*]] = torch.aten.view {{.*}} -> !torch.vtensor<[2,3,1,2,4],f32>
// CHECK:         %[[Q:.*]] = torch.aten.permute %[[HQ]], {{.*}} -> !torch.vtensor<[1,2,2,3,4],f32>
// CHECK:         torch.aten.slice.Tensor %[[W]], {{.*}} -> !torch.vtensor<[8,8],f32>
// CHECK:         torch.aten.mm %[[X2]], {{.*}} -> !torch.vtensor<[6,8],f32>
// CHECK:         %[[K:.*]] = torch.aten.permute {{.*}} -> !torch.vtensor<[1,2,2,3,4],f32>
// CHECK:         torch.aten.slice.Tensor %[[W]], {{.*}} -> !torch.vtensor<[8,8],f32>
// CHECK:         torch.aten.mm %[[X2]], {{.*}} -> !torch.vtensor<[6,8],f32>
// CHECK:         %[[V:.*]] = torch.aten.permute {{.*}} -> !torch.vtensor<[1,2,2,3,4],f32>
// CHECK-NOT:     torch.aten.slice.Tensor
// CHECK:         %[[QS:.*]] = torch.aten.squeeze.dim %[[Q]]
// CHECK:         %[[KS:.*]] = torch.aten.squeeze.dim %[[K]]
// CHECK:         %[[VS:.*]] = torch.aten.squeeze.dim %[[V]]
// CHECK:         return %[[QS]], %[[KS]], %[[VS]]
func.func @fused_qkv(%x: !torch.vtensor<[2,3,8],f32>) -> (!torch.vtensor<[2,2,3,4],f32>, !torch.vtensor<[2,2,3,4],f32>, !torch.vtensor<[2,2,3,4],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int6 = torch.constant.int 6
  %int8 = torch.constant.int 8
  %int24 = torch.constant.int 24
  %w = torch.vtensor.literal(dense<1.000000e+00> : tensor<24x8xf32>) : !torch.vtensor<[24,8],f32>
  %b = torch.vtensor.literal(dense<2.000000e+00> : tensor<24xf32>) : !torch.vtensor<[24],f32>
  %s0 = torch.prim.ListConstruct %int6, %int8 : (!torch.int, !torch.int) -> !torch.list<int>
  %x2 = torch.aten.view %x, %s0 : !torch.vtensor<[2,3,8],f32>, !torch.list<int> -> !torch.vtensor<[6,8],f32>
  %p0 = torch.prim.ListConstruct %int1, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %wt = torch.aten.permute %w, %p0 : !torch.vtensor<[24,8],f32>, !torch.list<int> -> !torch.vtensor<[8,24],f32>
  %mm = torch.aten.mm %x2, %wt : !torch.vtensor<[6,8],f32>, !torch.vtensor<[8,24],f32> -> !torch.vtensor<[6,24],f32>
  %alpha = torch.aten.mul.Scalar %mm, %int1 : !torch.vtensor<[6,24],f32>, !torch.int -> !torch.vtensor<[6,24],f32>
  %beta = torch.aten.mul.Scalar %b, %int1 : !torch.vtensor<[24],f32>, !torch.int -> !torch.vtensor<[24],f32>
  %y = torch.aten.add.Tensor %alpha, %beta, %int1 : !torch.vtensor<[6,24],f32>, !torch.vtensor<[24],f32>, !torch.int -> !torch.vtensor<[6,24],f32>
  %s1 = torch.prim.ListConstruct %int2, %int3, %int24 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %y3 = torch.aten.view %y, %s1 : !torch.vtensor<[6,24],f32>, !torch.list<int> -> !torch.vtensor<[2,3,24],f32>
  %s2 = torch.prim.ListConstruct %int2, %int3, %int3, %int2, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %heads = torch.aten.view %y3, %s2 : !torch.vtensor<[2,3,24],f32>, !torch.list<int> -> !torch.vtensor<[2,3,3,2,4],f32>
  %p1 = torch.prim.ListConstruct %int2, %int0, %int3, %int1, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %qkv = torch.aten.permute %heads, %p1 : !torch.vtensor<[2,3,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[3,2,2,3,4],f32>
  %q1 = torch.aten.slice.Tensor %qkv, %int0, %int0, %int1, %int1 : !torch.vtensor<[3,2,2,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,2,3,4],f32>
  %k1 = torch.aten.slice.Tensor %qkv, %int0, %int1, %int2, %int1 : !torch.vtensor<[3,2,2,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,2,3,4],f32>
  %v1 = torch.aten.slice.Tensor %qkv, %int0, %int2, %int3, %int1 : !torch.vtensor<[3,2,2,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,2,3,4],f32>
  %q = torch.aten.squeeze.dim %q1, %int0 : !torch.vtensor<[1,2,2,3,4],f32>, !torch.int -> !torch.vtensor<[2,2,3,4],f32>
  %k = torch.aten.squeeze.dim %k1, %int0 : !torch.vtensor<[1,2,2,3,4],f32>, !torch.int -> !torch.vtensor<[2,2,3,4],f32>
  %v = torch.aten.squeeze.dim %v1, %int0 : !torch.vtensor<[1,2,2,3,4],f32>, !torch.int -> !torch.vtensor<[2,2,3,4],f32>
  return %q, %k, %v : !torch.vtensor<[2,2,3,4],f32>, !torch.vtensor<[2,2,3,4],f32>, !torch.vtensor<[2,2,3,4],f32>
}

// GPT-2's Conv1D form: the weight is [in, out] (no transpose) and split(8, dim=2) slices the last axis,
// here with negative and open-ended bounds; the weight is sliced along its columns.
// CHECK-LABEL: func.func @conv1d_split(
// CHECK-DAG:     %[[W:.*]] = torch.vtensor.literal(dense<1.000000e+00> : tensor<8x24xf32>)
// CHECK-NOT:     [6,24]
// CHECK:         %[[WQ:.*]] = torch.aten.slice.Tensor %[[W]], %[[ONE:.*]], %[[ZERO:.*]], %[[EIGHT:.*]], %[[ONE]] : {{.*}} -> !torch.vtensor<[8,8],f32>
// CHECK:         %[[Q:.*]] = torch.aten.mm %{{.*}}, %[[WQ]] : {{.*}} -> !torch.vtensor<[6,8],f32>
// CHECK:         torch.aten.slice.Tensor %[[W]], %[[ONE]], %[[EIGHT]], {{.*}} -> !torch.vtensor<[8,8],f32>
// CHECK:         %[[K:.*]] = torch.aten.mm {{.*}} -> !torch.vtensor<[6,8],f32>
// CHECK:         torch.aten.slice.Tensor %[[W]], %[[ONE]], {{.*}} -> !torch.vtensor<[8,8],f32>
// CHECK:         %[[V:.*]] = torch.aten.mm {{.*}} -> !torch.vtensor<[6,8],f32>
// CHECK-NOT:     torch.aten.slice.Tensor
// CHECK:         return %[[Q]], %[[K]], %[[V]]
func.func @conv1d_split(%x: !torch.vtensor<[6,8],f32>) -> (!torch.vtensor<[6,8],f32>, !torch.vtensor<[6,8],f32>, !torch.vtensor<[6,8],f32>) {
  %int1 = torch.constant.int 1
  %int8 = torch.constant.int 8
  %int16 = torch.constant.int 16
  %int-8 = torch.constant.int -8
  %none = torch.constant.none
  %w = torch.vtensor.literal(dense<1.000000e+00> : tensor<8x24xf32>) : !torch.vtensor<[8,24],f32>
  %y = torch.aten.mm %x, %w : !torch.vtensor<[6,8],f32>, !torch.vtensor<[8,24],f32> -> !torch.vtensor<[6,24],f32>
  %q = torch.aten.slice.Tensor %y, %int1, %none, %int8, %int1 : !torch.vtensor<[6,24],f32>, !torch.int, !torch.none, !torch.int, !torch.int -> !torch.vtensor<[6,8],f32>
  %k = torch.aten.slice.Tensor %y, %int1, %int8, %int16, %int1 : !torch.vtensor<[6,24],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[6,8],f32>
  %v = torch.aten.slice.Tensor %y, %int1, %int-8, %none, %int1 : !torch.vtensor<[6,24],f32>, !torch.int, !torch.int, !torch.none, !torch.int -> !torch.vtensor<[6,8],f32>
  return %q, %k, %v : !torch.vtensor<[6,8],f32>, !torch.vtensor<[6,8],f32>, !torch.vtensor<[6,8],f32>
}

// aten.linear (weight rows and bias both sliced) split by select.int after view + permute; each
// select becomes a squeeze of its part. Only two of the three parts are used: V's rows are dropped.
// CHECK-LABEL: func.func @linear_select(
// CHECK-DAG:     %[[W:.*]] = torch.vtensor.literal(dense<1.000000e+00> : tensor<24x8xf32>)
// CHECK-DAG:     %[[B:.*]] = torch.vtensor.literal(dense<2.000000e+00> : tensor<24xf32>)
// CHECK:         %[[WQ:.*]] = torch.aten.slice.Tensor %[[W]], {{.*}} -> !torch.vtensor<[8,8],f32>
// CHECK:         %[[BQ:.*]] = torch.aten.slice.Tensor %[[B]], {{.*}} -> !torch.vtensor<[8],f32>
// CHECK:         torch.aten.linear %{{.*}}, %[[WQ]], %[[BQ]] : {{.*}} -> !torch.vtensor<[6,8],f32>
// CHECK:         %[[Q:.*]] = torch.aten.permute {{.*}} -> !torch.vtensor<[1,2,6,4],f32>
// CHECK:         torch.aten.linear {{.*}} -> !torch.vtensor<[6,8],f32>
// CHECK:         %[[K:.*]] = torch.aten.permute {{.*}} -> !torch.vtensor<[1,2,6,4],f32>
// CHECK:         %[[QS:.*]] = torch.aten.squeeze.dim %[[Q]], %{{.*}} -> !torch.vtensor<[2,6,4],f32>
// CHECK:         %[[KS:.*]] = torch.aten.squeeze.dim %[[K]], %{{.*}} -> !torch.vtensor<[2,6,4],f32>
// CHECK-NOT:     torch.aten.linear
// CHECK-NOT:     torch.aten.select.int
// CHECK:         return %[[QS]], %[[KS]]
func.func @linear_select(%x: !torch.vtensor<[6,8],f32>) -> (!torch.vtensor<[2,6,4],f32>, !torch.vtensor<[2,6,4],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int6 = torch.constant.int 6
  %w = torch.vtensor.literal(dense<1.000000e+00> : tensor<24x8xf32>) : !torch.vtensor<[24,8],f32>
  %b = torch.vtensor.literal(dense<2.000000e+00> : tensor<24xf32>) : !torch.vtensor<[24],f32>
  %y = torch.aten.linear %x, %w, %b : !torch.vtensor<[6,8],f32>, !torch.vtensor<[24,8],f32>, !torch.vtensor<[24],f32> -> !torch.vtensor<[6,24],f32>
  %shape = torch.prim.ListConstruct %int6, %int3, %int2, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %heads = torch.aten.view %y, %shape : !torch.vtensor<[6,24],f32>, !torch.list<int> -> !torch.vtensor<[6,3,2,4],f32>
  %perm = torch.prim.ListConstruct %int1, %int2, %int0, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %qkv = torch.aten.permute %heads, %perm : !torch.vtensor<[6,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[3,2,6,4],f32>
  %q = torch.aten.select.int %qkv, %int0, %int0 : !torch.vtensor<[3,2,6,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[2,6,4],f32>
  %k = torch.aten.select.int %qkv, %int0, %int1 : !torch.vtensor<[3,2,6,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[2,6,4],f32>
  return %q, %k : !torch.vtensor<[2,6,4],f32>, !torch.vtensor<[2,6,4],f32>
}

// Left unchanged: the fused result also feeds something else (splitting would compute it twice).
// CHECK-LABEL: func.func @other_use(
// CHECK:         %[[Y:.*]] = torch.aten.mm {{.*}} -> !torch.vtensor<[6,24],f32>
// CHECK:         torch.aten.slice.Tensor %[[Y]], {{.*}} -> !torch.vtensor<[6,12],f32>
// CHECK:         torch.aten.slice.Tensor %[[Y]], {{.*}} -> !torch.vtensor<[6,12],f32>
// CHECK:         torch.aten.tanh %[[Y]]
// CHECK-NOT:     torch.aten.mm
func.func @other_use(%x: !torch.vtensor<[6,8],f32>) -> (!torch.vtensor<[6,12],f32>, !torch.vtensor<[6,12],f32>, !torch.vtensor<[6,24],f32>) {
  %int1 = torch.constant.int 1
  %int0 = torch.constant.int 0
  %int12 = torch.constant.int 12
  %int24 = torch.constant.int 24
  %w = torch.vtensor.literal(dense<1.000000e+00> : tensor<8x24xf32>) : !torch.vtensor<[8,24],f32>
  %y = torch.aten.mm %x, %w : !torch.vtensor<[6,8],f32>, !torch.vtensor<[8,24],f32> -> !torch.vtensor<[6,24],f32>
  %a = torch.aten.slice.Tensor %y, %int1, %int0, %int12, %int1 : !torch.vtensor<[6,24],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[6,12],f32>
  %b = torch.aten.slice.Tensor %y, %int1, %int12, %int24, %int1 : !torch.vtensor<[6,24],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[6,12],f32>
  %t = torch.aten.tanh %y : !torch.vtensor<[6,24],f32> -> !torch.vtensor<[6,24],f32>
  return %a, %b, %t : !torch.vtensor<[6,12],f32>, !torch.vtensor<[6,12],f32>, !torch.vtensor<[6,24],f32>
}

// Left unchanged: a weight that is a function argument, not a constant.
// CHECK-LABEL: func.func @argument_weight(
// CHECK:         %[[Y:.*]] = torch.aten.mm %arg0, %arg1 : {{.*}} -> !torch.vtensor<[6,24],f32>
// CHECK:         torch.aten.slice.Tensor %[[Y]], {{.*}} -> !torch.vtensor<[6,12],f32>
// CHECK:         torch.aten.slice.Tensor %[[Y]], {{.*}} -> !torch.vtensor<[6,12],f32>
// CHECK-NOT:     torch.aten.mm
func.func @argument_weight(%x: !torch.vtensor<[6,8],f32>, %w: !torch.vtensor<[8,24],f32>) -> (!torch.vtensor<[6,12],f32>, !torch.vtensor<[6,12],f32>) {
  %int1 = torch.constant.int 1
  %int0 = torch.constant.int 0
  %int12 = torch.constant.int 12
  %int24 = torch.constant.int 24
  %y = torch.aten.mm %x, %w : !torch.vtensor<[6,8],f32>, !torch.vtensor<[8,24],f32> -> !torch.vtensor<[6,24],f32>
  %a = torch.aten.slice.Tensor %y, %int1, %int0, %int12, %int1 : !torch.vtensor<[6,24],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[6,12],f32>
  %b = torch.aten.slice.Tensor %y, %int1, %int12, %int24, %int1 : !torch.vtensor<[6,24],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[6,12],f32>
  return %a, %b : !torch.vtensor<[6,12],f32>, !torch.vtensor<[6,12],f32>
}

// Left unchanged: uneven parts (16 + 8) and overlapping parts ([0, 12) and [8, 20)).
// CHECK-LABEL: func.func @uneven_and_overlapping(
// CHECK:         %[[Y:.*]] = torch.aten.mm {{.*}} -> !torch.vtensor<[6,24],f32>
// CHECK:         torch.aten.slice.Tensor %[[Y]], {{.*}} -> !torch.vtensor<[6,16],f32>
// CHECK:         torch.aten.slice.Tensor %[[Y]], {{.*}} -> !torch.vtensor<[6,8],f32>
// CHECK:         %[[Z:.*]] = torch.aten.mm {{.*}} -> !torch.vtensor<[6,24],f32>
// CHECK:         torch.aten.slice.Tensor %[[Z]], {{.*}} -> !torch.vtensor<[6,12],f32>
// CHECK:         torch.aten.slice.Tensor %[[Z]], {{.*}} -> !torch.vtensor<[6,12],f32>
// CHECK-NOT:     torch.aten.mm
func.func @uneven_and_overlapping(%x: !torch.vtensor<[6,8],f32>) -> (!torch.vtensor<[6,16],f32>, !torch.vtensor<[6,8],f32>, !torch.vtensor<[6,12],f32>, !torch.vtensor<[6,12],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int8 = torch.constant.int 8
  %int12 = torch.constant.int 12
  %int16 = torch.constant.int 16
  %int20 = torch.constant.int 20
  %int24 = torch.constant.int 24
  %w = torch.vtensor.literal(dense<1.000000e+00> : tensor<8x24xf32>) : !torch.vtensor<[8,24],f32>
  %y = torch.aten.mm %x, %w : !torch.vtensor<[6,8],f32>, !torch.vtensor<[8,24],f32> -> !torch.vtensor<[6,24],f32>
  %a = torch.aten.slice.Tensor %y, %int1, %int0, %int16, %int1 : !torch.vtensor<[6,24],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[6,16],f32>
  %b = torch.aten.slice.Tensor %y, %int1, %int16, %int24, %int1 : !torch.vtensor<[6,24],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[6,8],f32>
  %z = torch.aten.mm %x, %w : !torch.vtensor<[6,8],f32>, !torch.vtensor<[8,24],f32> -> !torch.vtensor<[6,24],f32>
  %c = torch.aten.slice.Tensor %z, %int1, %int0, %int12, %int1 : !torch.vtensor<[6,24],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[6,12],f32>
  %d = torch.aten.slice.Tensor %z, %int1, %int8, %int20, %int1 : !torch.vtensor<[6,24],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[6,12],f32>
  return %a, %b, %c, %d : !torch.vtensor<[6,16],f32>, !torch.vtensor<[6,8],f32>, !torch.vtensor<[6,12],f32>, !torch.vtensor<[6,12],f32>
}
