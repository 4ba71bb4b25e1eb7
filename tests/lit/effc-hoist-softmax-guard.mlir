// effc-hoist-softmax-guard tests torch's safe-softmax guard, all(scores == -inf) per row, on the additive
// mask instead of every head's scores, drops it where the scores are an unmasked q·kᵀ, and leaves guards it
// cannot hoist as they are, counted by reason in the module attribute effc.hoist_softmax_guard.

// RUN: effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-hoist-softmax-guard)' | FileCheck %s

// sdpa's decomposition with a [1,1,3,3] mask on [1,2,3,3] scores: the guard reduces the mask over its last
// axis to [1,1,3,1] and broadcasts that to the guard's [1,2,3,1]; no reduction over the scores is left.
// CHECK:       module attributes {effc.hoist_softmax_guard = "2/4 safe-softmax guards tested on the mask or dropped (no mask); left: mask not broadcast over the scores (1), scores are not x + mask (1)"}
// CHECK-LABEL: func.func @masked(
// CHECK-SAME:    %[[S:.*]]: !torch.vtensor<[1,2,3,3],f32>, %[[MASK:.*]]: !torch.vtensor<[1,1,3,3],f32>
// CHECK:         %[[NEG_INF:.*]] = torch.constant.float 0xFFF0000000000000
// CHECK:         %[[SCORES:.*]] = torch.aten.add.Tensor %[[S]], %[[MASK]]
// CHECK:         %[[MASKED:.*]] = torch.aten.eq.Scalar %[[MASK]], %[[NEG_INF]] : !torch.vtensor<[1,1,3,3],f32>, !torch.float -> !torch.vtensor<[1,1,3,3],i1>
// CHECK:         %[[ROWS:.*]] = torch.aten.all.dim %[[MASKED]], %{{.*}}, %{{.*}} : !torch.vtensor<[1,1,3,3],i1>, !torch.int, !torch.bool -> !torch.vtensor<[1,1,3,1],i1>
// CHECK:         %[[GUARD:.*]] = torch.aten.broadcast_to %[[ROWS]], %{{.*}} : !torch.vtensor<[1,1,3,1],i1>, !torch.list<int> -> !torch.vtensor<[1,2,3,1],i1>
// CHECK-NOT:     torch.aten.eq.Scalar %[[SCORES]]
// CHECK:         torch.aten.where.self %[[GUARD]]
func.func @masked(%s: !torch.vtensor<[1,2,3,3],f32>, %mask: !torch.vtensor<[1,1,3,3],f32>) -> !torch.vtensor<[1,2,3,3],f32> {
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %int1 = torch.constant.int 1
  %int-1 = torch.constant.int -1
  %neg_inf = torch.constant.float 0xFFF0000000000000
  %zero = torch.vtensor.literal(dense<0.000000e+00> : tensor<f32>) : !torch.vtensor<[],f32>
  %scores = torch.aten.add.Tensor %s, %mask, %int1 : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,1,3,3],f32>, !torch.int -> !torch.vtensor<[1,2,3,3],f32>
  %p = torch.aten._softmax %scores, %int-1, %false : !torch.vtensor<[1,2,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,3],f32>
  %inf = torch.aten.eq.Scalar %scores, %neg_inf : !torch.vtensor<[1,2,3,3],f32>, !torch.float -> !torch.vtensor<[1,2,3,3],i1>
  %all = torch.aten.all.dim %inf, %int-1, %true : !torch.vtensor<[1,2,3,3],i1>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,1],i1>
  %out = torch.aten.where.self %all, %zero, %p : !torch.vtensor<[1,2,3,1],i1>, !torch.vtensor<[],f32>, !torch.vtensor<[1,2,3,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  return %out : !torch.vtensor<[1,2,3,3],f32>
}

// Both addends as large as the scores: which one is the mask cannot be told (nor would hoisting save
// anything), so the guard stays on the scores.
// CHECK-LABEL: func.func @full_mask(
// CHECK:         %[[SCORES:.*]] = torch.aten.add.Tensor
// CHECK:         %[[INF:.*]] = torch.aten.eq.Scalar %[[SCORES]]
// CHECK:         torch.aten.all.dim %[[INF]]
func.func @full_mask(%mask: !torch.vtensor<[1,2,3,3],f32>, %s: !torch.vtensor<[1,2,3,3],f32>) -> !torch.vtensor<[1,2,3,3],f32> {
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %int1 = torch.constant.int 1
  %int-1 = torch.constant.int -1
  %neg_inf = torch.constant.float 0xFFF0000000000000
  %zero = torch.vtensor.literal(dense<0.000000e+00> : tensor<f32>) : !torch.vtensor<[],f32>
  %scores = torch.aten.add.Tensor %mask, %s, %int1 : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,2,3,3],f32>, !torch.int -> !torch.vtensor<[1,2,3,3],f32>
  %p = torch.aten._softmax %scores, %int-1, %false : !torch.vtensor<[1,2,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,3],f32>
  %inf = torch.aten.eq.Scalar %scores, %neg_inf : !torch.vtensor<[1,2,3,3],f32>, !torch.float -> !torch.vtensor<[1,2,3,3],i1>
  %all = torch.aten.all.dim %inf, %int-1, %true : !torch.vtensor<[1,2,3,3],i1>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,1],i1>
  %out = torch.aten.where.self %all, %zero, %p : !torch.vtensor<[1,2,3,1],i1>, !torch.vtensor<[],f32>, !torch.vtensor<[1,2,3,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  return %out : !torch.vtensor<[1,2,3,3],f32>
}

// No mask, and the scores are q·kᵀ, scaled and reshaped: no row is all -inf unless a dot product overflows,
// so the guard and its reduction go, and the softmax is the result.
// CHECK-LABEL: func.func @unmasked_product(
// CHECK:         %[[P:.*]] = torch.aten._softmax
// CHECK-NOT:     torch.aten.all.dim
// CHECK-NOT:     torch.aten.where.self
// CHECK:         return %[[P]]
func.func @unmasked_product(%q: !torch.vtensor<[2,3,4],f32>, %kt: !torch.vtensor<[2,4,3],f32>) -> !torch.vtensor<[1,2,3,3],f32> {
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int-1 = torch.constant.int -1
  %scale = torch.constant.float 5.000000e-01
  %neg_inf = torch.constant.float 0xFFF0000000000000
  %zero = torch.vtensor.literal(dense<0.000000e+00> : tensor<f32>) : !torch.vtensor<[],f32>
  %qk = torch.aten.bmm %q, %kt : !torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,4,3],f32> -> !torch.vtensor<[2,3,3],f32>
  %shape = torch.prim.ListConstruct %int1, %int2, %int3, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %view = torch.aten.view %qk, %shape : !torch.vtensor<[2,3,3],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,3],f32>
  %s = torch.aten.mul.Scalar %view, %scale : !torch.vtensor<[1,2,3,3],f32>, !torch.float -> !torch.vtensor<[1,2,3,3],f32>
  %p = torch.aten._softmax %s, %int-1, %false : !torch.vtensor<[1,2,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,3],f32>
  %inf = torch.aten.eq.Scalar %s, %neg_inf : !torch.vtensor<[1,2,3,3],f32>, !torch.float -> !torch.vtensor<[1,2,3,3],i1>
  %all = torch.aten.all.dim %inf, %int-1, %true : !torch.vtensor<[1,2,3,3],i1>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,1],i1>
  %out = torch.aten.where.self %all, %zero, %p : !torch.vtensor<[1,2,3,1],i1>, !torch.vtensor<[],f32>, !torch.vtensor<[1,2,3,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  return %out : !torch.vtensor<[1,2,3,3],f32>
}

// No mask, and scores that are not a product (here an argument): the guard stays on the scores.
// CHECK-LABEL: func.func @unmasked(
// CHECK-SAME:    %[[S:.*]]: !torch.vtensor<[1,2,3,3],f32>
// CHECK:         %[[INF:.*]] = torch.aten.eq.Scalar %[[S]]
// CHECK:         torch.aten.all.dim %[[INF]]
func.func @unmasked(%s: !torch.vtensor<[1,2,3,3],f32>) -> !torch.vtensor<[1,2,3,3],f32> {
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %int-1 = torch.constant.int -1
  %neg_inf = torch.constant.float 0xFFF0000000000000
  %zero = torch.vtensor.literal(dense<0.000000e+00> : tensor<f32>) : !torch.vtensor<[],f32>
  %p = torch.aten._softmax %s, %int-1, %false : !torch.vtensor<[1,2,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,3],f32>
  %inf = torch.aten.eq.Scalar %s, %neg_inf : !torch.vtensor<[1,2,3,3],f32>, !torch.float -> !torch.vtensor<[1,2,3,3],i1>
  %all = torch.aten.all.dim %inf, %int-1, %true : !torch.vtensor<[1,2,3,3],i1>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,1],i1>
  %out = torch.aten.where.self %all, %zero, %p : !torch.vtensor<[1,2,3,1],i1>, !torch.vtensor<[],f32>, !torch.vtensor<[1,2,3,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  return %out : !torch.vtensor<[1,2,3,3],f32>
}

// -----

// A module without a guard is left alone, and says so.
// CHECK: module attributes {effc.hoist_softmax_guard = "0/0 safe-softmax guards tested on the mask or dropped (no mask)"}
// CHECK-LABEL: func.func @plain(
// CHECK:         torch.aten._softmax
func.func @plain(%s: !torch.vtensor<[2,3],f32>) -> !torch.vtensor<[2,3],f32> {
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %int-1 = torch.constant.int -1
  %p = torch.aten._softmax %s, %int-1, %false : !torch.vtensor<[2,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[2,3],f32>
  return %p : !torch.vtensor<[2,3],f32>
}
