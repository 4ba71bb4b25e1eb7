// effc-narrow-softmax keeps an f16/bf16 attention that torch's decomposition upcast to f32 (q·kᵀ, mask,
// softmax, p·v) in the model's own type, and leaves attentions it cannot narrow as they are, counted by reason
// in the module attribute effc.narrow_softmax. Casts that no softmax feeds (an RMSNorm in f32) are not sites.

// RUN: effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-narrow-softmax)' | FileCheck %s

// sdpa's decomposition on f16 q, k, v and an f16 mask (one query row, three keys, two heads): every tensor
// between the upcasts and the final cast becomes f16, the guard's zero literal too; no to.dtype is left.
// CHECK:       module attributes {effc.narrow_softmax = "1/1 f32 regions narrowed"}
// CHECK-LABEL: func.func @decode_attention(
// CHECK-SAME:    %[[Q:.*]]: !torch.vtensor<[1,2,1,4],f16>, %[[K:.*]]: !torch.vtensor<[1,2,3,4],f16>, %[[V:.*]]: !torch.vtensor<[1,2,3,4],f16>, %[[MASK:.*]]: !torch.vtensor<[1,1,1,3],f16>
// CHECK:         %[[ZERO:.*]] = torch.vtensor.literal(dense<0.000000e+00> : tensor<1x2x1x3xf16>) : !torch.vtensor<[1,2,1,3],f16>
// CHECK-NOT:     torch.aten.to.dtype
// CHECK:         torch.aten.mul.Scalar %[[Q]], %{{.*}} : !torch.vtensor<[1,2,1,4],f16>, !torch.float -> !torch.vtensor<[1,2,1,4],f16>
// CHECK:         torch.aten.permute %[[K]], %{{.*}} -> !torch.vtensor<[1,2,4,3],f16>
// CHECK:         %[[SCORES:.*]] = torch.aten.bmm %{{.*}}, %{{.*}} : !torch.vtensor<[2,1,4],f16>, !torch.vtensor<[2,4,3],f16> -> !torch.vtensor<[2,1,3],f16>
// CHECK:         torch.aten.add.Tensor %{{.*}}, %[[MASK]], %{{.*}} : !torch.vtensor<[1,2,1,3],f16>, !torch.vtensor<[1,1,1,3],f16>, !torch.int -> !torch.vtensor<[1,2,1,3],f16>
// CHECK:         torch.aten.max.dim {{.*}} -> !torch.vtensor<[1,2,1,1],f16>, !torch.vtensor<[1,2,1,1],si64>
// CHECK:         torch.aten.exp {{.*}} -> !torch.vtensor<[1,2,1,3],f16>
// CHECK:         torch.aten.sum.dim_IntList {{.*}} -> !torch.vtensor<[1,2,1,1],f16>
// CHECK:         torch.aten.where.self %{{.*}}, %[[ZERO]], %{{.*}} -> !torch.vtensor<[1,2,1,3],f16>
// CHECK:         torch.aten.view %[[V]], %{{.*}} -> !torch.vtensor<[2,3,4],f16>
// CHECK:         %[[OUT:.*]] = torch.aten.bmm {{.*}} -> !torch.vtensor<[2,1,4],f16>
// CHECK:         %[[VIEW:.*]] = torch.aten.view %[[OUT]]
// CHECK-NEXT:    return %[[VIEW]] : !torch.vtensor<[1,2,1,4],f16>
func.func @decode_attention(%q: !torch.vtensor<[1,2,1,4],f16>, %k: !torch.vtensor<[1,2,3,4],f16>, %v: !torch.vtensor<[1,2,3,4],f16>, %mask: !torch.vtensor<[1,1,1,3],f16>) -> !torch.vtensor<[1,2,1,4],f16> {
  %zero = torch.vtensor.literal(dense<0.000000e+00> : tensor<1x2x1x3xf32>) : !torch.vtensor<[1,2,1,3],f32>
  %float1 = torch.constant.float 1.000000e+00
  %int5 = torch.constant.int 5
  %true = torch.constant.bool true
  %neg_inf = torch.constant.float 0xFFF0000000000000
  %int-1 = torch.constant.int -1
  %int4 = torch.constant.int 4
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int1 = torch.constant.int 1
  %int0 = torch.constant.int 0
  %scale = torch.constant.float 0.70710678118654757
  %int6 = torch.constant.int 6
  %false = torch.constant.bool false
  %none = torch.constant.none
  %q32 = torch.aten.to.dtype %q, %int6, %false, %false, %none : !torch.vtensor<[1,2,1,4],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,2,1,4],f32>
  %k32 = torch.aten.to.dtype %k, %int6, %false, %false, %none : !torch.vtensor<[1,2,3,4],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,2,3,4],f32>
  %v32 = torch.aten.to.dtype %v, %int6, %false, %false, %none : !torch.vtensor<[1,2,3,4],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,2,3,4],f32>
  %qs = torch.aten.mul.Scalar %q32, %scale : !torch.vtensor<[1,2,1,4],f32>, !torch.float -> !torch.vtensor<[1,2,1,4],f32>
  %perm = torch.prim.ListConstruct %int0, %int1, %int3, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %kt = torch.aten.permute %k32, %perm : !torch.vtensor<[1,2,3,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,4,3],f32>
  %kts = torch.aten.mul.Scalar %kt, %scale : !torch.vtensor<[1,2,4,3],f32>, !torch.float -> !torch.vtensor<[1,2,4,3],f32>
  %s0 = torch.prim.ListConstruct %int2, %int1, %int4 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %q3 = torch.aten.view %qs, %s0 : !torch.vtensor<[1,2,1,4],f32>, !torch.list<int> -> !torch.vtensor<[2,1,4],f32>
  %s1 = torch.prim.ListConstruct %int2, %int4, %int3 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %k3 = torch.aten.view %kts, %s1 : !torch.vtensor<[1,2,4,3],f32>, !torch.list<int> -> !torch.vtensor<[2,4,3],f32>
  %qk = torch.aten.bmm %q3, %k3 : !torch.vtensor<[2,1,4],f32>, !torch.vtensor<[2,4,3],f32> -> !torch.vtensor<[2,1,3],f32>
  %s2 = torch.prim.ListConstruct %int1, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %qk4 = torch.aten.view %qk, %s2 : !torch.vtensor<[2,1,3],f32>, !torch.list<int> -> !torch.vtensor<[1,2,1,3],f32>
  %scores = torch.aten.add.Tensor %qk4, %mask, %int1 : !torch.vtensor<[1,2,1,3],f32>, !torch.vtensor<[1,1,1,3],f16>, !torch.int -> !torch.vtensor<[1,2,1,3],f32>
  %values, %indices = torch.aten.max.dim %scores, %int-1, %true : !torch.vtensor<[1,2,1,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,1,1],f32>, !torch.vtensor<[1,2,1,1],si64>
  %shifted = torch.aten.sub.Tensor %scores, %values, %float1 : !torch.vtensor<[1,2,1,3],f32>, !torch.vtensor<[1,2,1,1],f32>, !torch.float -> !torch.vtensor<[1,2,1,3],f32>
  %e = torch.aten.exp %shifted : !torch.vtensor<[1,2,1,3],f32> -> !torch.vtensor<[1,2,1,3],f32>
  %axis = torch.prim.ListConstruct %int-1 : (!torch.int) -> !torch.list<int>
  %sum = torch.aten.sum.dim_IntList %e, %axis, %true, %none : !torch.vtensor<[1,2,1,3],f32>, !torch.list<int>, !torch.bool, !torch.none -> !torch.vtensor<[1,2,1,1],f32>
  %p = torch.aten.div.Tensor %e, %sum : !torch.vtensor<[1,2,1,3],f32>, !torch.vtensor<[1,2,1,1],f32> -> !torch.vtensor<[1,2,1,3],f32>
  %inf = torch.aten.eq.Scalar %scores, %neg_inf : !torch.vtensor<[1,2,1,3],f32>, !torch.float -> !torch.vtensor<[1,2,1,3],i1>
  %all = torch.aten.all.dim %inf, %int-1, %true : !torch.vtensor<[1,2,1,3],i1>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,1,1],i1>
  %guarded = torch.aten.where.self %all, %zero, %p : !torch.vtensor<[1,2,1,1],i1>, !torch.vtensor<[1,2,1,3],f32>, !torch.vtensor<[1,2,1,3],f32> -> !torch.vtensor<[1,2,1,3],f32>
  %s3 = torch.prim.ListConstruct %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %p3 = torch.aten.view %guarded, %s3 : !torch.vtensor<[1,2,1,3],f32>, !torch.list<int> -> !torch.vtensor<[2,1,3],f32>
  %s4 = torch.prim.ListConstruct %int2, %int3, %int4 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %v3 = torch.aten.view %v32, %s4 : !torch.vtensor<[1,2,3,4],f32>, !torch.list<int> -> !torch.vtensor<[2,3,4],f32>
  %pv = torch.aten.bmm %p3, %v3 : !torch.vtensor<[2,1,3],f32>, !torch.vtensor<[2,3,4],f32> -> !torch.vtensor<[2,1,4],f32>
  %s5 = torch.prim.ListConstruct %int1, %int2, %int1, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %pv4 = torch.aten.view %pv, %s5 : !torch.vtensor<[2,1,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,1,4],f32>
  %out = torch.aten.to.dtype %pv4, %int5, %false, %false, %none : !torch.vtensor<[1,2,1,4],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,2,1,4],f16>
  return %out : !torch.vtensor<[1,2,1,4],f16>
}

// -----

// Left as they are: a softmax whose f32 probabilities are also returned (used outside the attention), one whose
// scores come in as f32 (a function argument), one behind an op the pass does not retype (tanh capping), and
// one that computes in f32 by its own flag (_softmax's half_to_float).
// The f32 RMSNorm-like cast feeds no softmax: not a site, so not counted.
// CHECK:       module attributes {effc.narrow_softmax = "0/4 f32 regions narrowed; left: f32 input from outside the attention (1), f32 value used outside the attention (1), torch.aten._softmax with an explicit result type (1), torch.aten.tanh in the attention (1)"}
// CHECK-LABEL: func.func @probabilities_escape(
// CHECK:         torch.aten.to.dtype %{{.*}} -> !torch.vtensor<[2,3],f32>
// CHECK:         torch.aten._softmax {{.*}} -> !torch.vtensor<[2,3],f32>
func.func @probabilities_escape(%x: !torch.vtensor<[2,3],bf16>) -> (!torch.vtensor<[2,3],bf16>, !torch.vtensor<[2,3],f32>) {
  %int5 = torch.constant.int 15
  %int6 = torch.constant.int 6
  %int-1 = torch.constant.int -1
  %false = torch.constant.bool false
  %none = torch.constant.none
  %x32 = torch.aten.to.dtype %x, %int6, %false, %false, %none : !torch.vtensor<[2,3],bf16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,3],f32>
  %p = torch.aten._softmax %x32, %int-1, %false : !torch.vtensor<[2,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[2,3],f32>
  %out = torch.aten.to.dtype %p, %int5, %false, %false, %none : !torch.vtensor<[2,3],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,3],bf16>
  return %out, %p : !torch.vtensor<[2,3],bf16>, !torch.vtensor<[2,3],f32>
}

// CHECK-LABEL: func.func @f32_scores_argument(
// CHECK:         torch.aten._softmax {{.*}} -> !torch.vtensor<[2,3],f32>
func.func @f32_scores_argument(%s: !torch.vtensor<[2,3],f32>) -> !torch.vtensor<[2,3],f16> {
  %int5 = torch.constant.int 5
  %int-1 = torch.constant.int -1
  %false = torch.constant.bool false
  %none = torch.constant.none
  %p = torch.aten._softmax %s, %int-1, %false : !torch.vtensor<[2,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[2,3],f32>
  %out = torch.aten.to.dtype %p, %int5, %false, %false, %none : !torch.vtensor<[2,3],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,3],f16>
  return %out : !torch.vtensor<[2,3],f16>
}

// CHECK-LABEL: func.func @capped_scores(
// CHECK:         torch.aten.tanh {{.*}} -> !torch.vtensor<[2,3],f32>
func.func @capped_scores(%x: !torch.vtensor<[2,3],f16>) -> !torch.vtensor<[2,3],f16> {
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %int-1 = torch.constant.int -1
  %false = torch.constant.bool false
  %none = torch.constant.none
  %x32 = torch.aten.to.dtype %x, %int6, %false, %false, %none : !torch.vtensor<[2,3],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,3],f32>
  %t = torch.aten.tanh %x32 : !torch.vtensor<[2,3],f32> -> !torch.vtensor<[2,3],f32>
  %p = torch.aten._softmax %t, %int-1, %false : !torch.vtensor<[2,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[2,3],f32>
  %out = torch.aten.to.dtype %p, %int5, %false, %false, %none : !torch.vtensor<[2,3],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,3],f16>
  return %out : !torch.vtensor<[2,3],f16>
}

// CHECK-LABEL: func.func @half_to_float(
// CHECK:         torch.aten._softmax {{.*}} -> !torch.vtensor<[2,3],f32>
func.func @half_to_float(%x: !torch.vtensor<[2,3],f16>) -> !torch.vtensor<[2,3],f16> {
  %int5 = torch.constant.int 5
  %int-1 = torch.constant.int -1
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %none = torch.constant.none
  %p = torch.aten._softmax %x, %int-1, %true : !torch.vtensor<[2,3],f16>, !torch.int, !torch.bool -> !torch.vtensor<[2,3],f32>
  %out = torch.aten.to.dtype %p, %int5, %false, %false, %none : !torch.vtensor<[2,3],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,3],f16>
  return %out : !torch.vtensor<[2,3],f16>
}

// CHECK-LABEL: func.func @rms_norm(
// CHECK:         torch.aten.rsqrt {{.*}} -> !torch.vtensor<[2,1],f32>
func.func @rms_norm(%x: !torch.vtensor<[2,3],f16>) -> !torch.vtensor<[2,3],f16> {
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %int-1 = torch.constant.int -1
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %none = torch.constant.none
  %x32 = torch.aten.to.dtype %x, %int6, %false, %false, %none : !torch.vtensor<[2,3],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,3],f32>
  %sq = torch.aten.mul.Tensor %x32, %x32 : !torch.vtensor<[2,3],f32>, !torch.vtensor<[2,3],f32> -> !torch.vtensor<[2,3],f32>
  %axis = torch.prim.ListConstruct %int-1 : (!torch.int) -> !torch.list<int>
  %ms = torch.aten.mean.dim %sq, %axis, %true, %none : !torch.vtensor<[2,3],f32>, !torch.list<int>, !torch.bool, !torch.none -> !torch.vtensor<[2,1],f32>
  %r = torch.aten.rsqrt %ms : !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,1],f32>
  %y = torch.aten.mul.Tensor %x32, %r : !torch.vtensor<[2,3],f32>, !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,3],f32>
  %out = torch.aten.to.dtype %y, %int5, %false, %false, %none : !torch.vtensor<[2,3],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,3],f16>
  return %out : !torch.vtensor<[2,3],f16>
}
