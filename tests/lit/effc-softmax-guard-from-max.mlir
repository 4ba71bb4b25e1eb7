// effc-softmax-guard-from-max tests torch's safe-softmax guard, all(scores == -inf) per row, as
// max(scores) == -inf on the row maximum the decomposed softmax already computes, and leaves guards without
// such a maximum as they are, counted by reason in the module attribute effc.softmax_guard_from_max.

// RUN: effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-softmax-guard-from-max)' | FileCheck %s

// sdpa's decomposition (a decode step's one query row): the guard reads the softmax's max.dim; no reduction
// into i1 and no comparison of every score with -inf is left.
// CHECK:       module attributes {effc.softmax_guard_from_max = "1/3 safe-softmax guards read off the softmax's row maximum; left: guard drops the reduced axis (1), no row maximum of the scores to read it from (1)"}
// CHECK-LABEL: func.func @decomposed(
// CHECK:         %[[NEG_INF:.*]] = torch.constant.float 0xFFF0000000000000
// CHECK:         %[[SCORES:.*]] = torch.aten.add.Tensor
// CHECK:         %[[MAX:.*]], %{{.*}} = torch.aten.max.dim %[[SCORES]]
// CHECK:         %[[DIV:.*]] = torch.aten.div.Tensor
// CHECK:         %[[GUARD:.*]] = torch.aten.eq.Scalar %[[MAX]], %[[NEG_INF]] : !torch.vtensor<[1,9,1,1],f32>, !torch.float -> !torch.vtensor<[1,9,1,1],i1>
// CHECK-NOT:     torch.aten.all.dim
// CHECK:         torch.aten.where.self %[[GUARD]], %{{.*}}, %[[DIV]]
func.func @decomposed(%s: !torch.vtensor<[1,9,1,17],f32>, %mask: !torch.vtensor<[1,1,1,17],f32>) -> !torch.vtensor<[1,9,1,17],f32> {
  %true = torch.constant.bool true
  %none = torch.constant.none
  %int1 = torch.constant.int 1
  %int-1 = torch.constant.int -1
  %float1 = torch.constant.float 1.000000e+00
  %neg_inf = torch.constant.float 0xFFF0000000000000
  %zero = torch.vtensor.literal(dense<0.000000e+00> : tensor<f32>) : !torch.vtensor<[],f32>
  %scores = torch.aten.add.Tensor %s, %mask, %int1 : !torch.vtensor<[1,9,1,17],f32>, !torch.vtensor<[1,1,1,17],f32>, !torch.int -> !torch.vtensor<[1,9,1,17],f32>
  %values, %indices = torch.aten.max.dim %scores, %int-1, %true : !torch.vtensor<[1,9,1,17],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,9,1,1],f32>, !torch.vtensor<[1,9,1,1],si64>
  %shifted = torch.aten.sub.Tensor %scores, %values, %float1 : !torch.vtensor<[1,9,1,17],f32>, !torch.vtensor<[1,9,1,1],f32>, !torch.float -> !torch.vtensor<[1,9,1,17],f32>
  %exp = torch.aten.exp %shifted : !torch.vtensor<[1,9,1,17],f32> -> !torch.vtensor<[1,9,1,17],f32>
  %dims = torch.prim.ListConstruct %int-1 : (!torch.int) -> !torch.list<int>
  %sum = torch.aten.sum.dim_IntList %exp, %dims, %true, %none : !torch.vtensor<[1,9,1,17],f32>, !torch.list<int>, !torch.bool, !torch.none -> !torch.vtensor<[1,9,1,1],f32>
  %p = torch.aten.div.Tensor %exp, %sum : !torch.vtensor<[1,9,1,17],f32>, !torch.vtensor<[1,9,1,1],f32> -> !torch.vtensor<[1,9,1,17],f32>
  %inf = torch.aten.eq.Scalar %scores, %neg_inf : !torch.vtensor<[1,9,1,17],f32>, !torch.float -> !torch.vtensor<[1,9,1,17],i1>
  %all = torch.aten.all.dim %inf, %int-1, %true : !torch.vtensor<[1,9,1,17],i1>, !torch.int, !torch.bool -> !torch.vtensor<[1,9,1,1],i1>
  %out = torch.aten.where.self %all, %zero, %p : !torch.vtensor<[1,9,1,1],i1>, !torch.vtensor<[],f32>, !torch.vtensor<[1,9,1,17],f32> -> !torch.vtensor<[1,9,1,17],f32>
  return %out : !torch.vtensor<[1,9,1,17],f32>
}

// A softmax left whole computes its maximum inside: there is none to read, so the guard stays.
// CHECK-LABEL: func.func @whole_softmax(
// CHECK:         %[[INF:.*]] = torch.aten.eq.Scalar %{{.*}}, %{{.*}} : !torch.vtensor<[1,2,3,3],f32>
// CHECK:         torch.aten.all.dim %[[INF]]
func.func @whole_softmax(%scores: !torch.vtensor<[1,2,3,3],f32>) -> !torch.vtensor<[1,2,3,3],f32> {
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %int-1 = torch.constant.int -1
  %neg_inf = torch.constant.float 0xFFF0000000000000
  %zero = torch.vtensor.literal(dense<0.000000e+00> : tensor<f32>) : !torch.vtensor<[],f32>
  %p = torch.aten._softmax %scores, %int-1, %false : !torch.vtensor<[1,2,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,3],f32>
  %inf = torch.aten.eq.Scalar %scores, %neg_inf : !torch.vtensor<[1,2,3,3],f32>, !torch.float -> !torch.vtensor<[1,2,3,3],i1>
  %all = torch.aten.all.dim %inf, %int-1, %true : !torch.vtensor<[1,2,3,3],i1>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,1],i1>
  %out = torch.aten.where.self %all, %zero, %p : !torch.vtensor<[1,2,3,1],i1>, !torch.vtensor<[],f32>, !torch.vtensor<[1,2,3,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  return %out : !torch.vtensor<[1,2,3,3],f32>
}

// A guard that drops the reduced axis is not torch's decomposition: left alone.
// CHECK-LABEL: func.func @dropped_axis(
// CHECK:         torch.aten.all.dim %{{.*}}, %{{.*}}, %{{.*}} : !torch.vtensor<[2,3],i1>, !torch.int, !torch.bool -> !torch.vtensor<[2],i1>
func.func @dropped_axis(%scores: !torch.vtensor<[2,3],f32>) -> !torch.vtensor<[2],i1> {
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %int-1 = torch.constant.int -1
  %neg_inf = torch.constant.float 0xFFF0000000000000
  %values, %indices = torch.aten.max.dim %scores, %int-1, %true : !torch.vtensor<[2,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[2,1],f32>, !torch.vtensor<[2,1],si64>
  %inf = torch.aten.eq.Scalar %scores, %neg_inf : !torch.vtensor<[2,3],f32>, !torch.float -> !torch.vtensor<[2,3],i1>
  %all = torch.aten.all.dim %inf, %int-1, %false : !torch.vtensor<[2,3],i1>, !torch.int, !torch.bool -> !torch.vtensor<[2],i1>
  return %all : !torch.vtensor<[2],i1>
}
