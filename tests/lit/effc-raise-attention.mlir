// effc-raise-attention turns a hand-written attention chain (matmul → scale → additive mask → softmax →
// matmul) into one scaled_dot_product_attention, and leaves every chain that sdpa would compute
// differently as it is, counted by reason in the module attribute effc.raise_attention.

// RUN: effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-raise-attention)' | FileCheck %s

// Q scaled by 0.5 and the scores divided by 2: one sdpa without a mask at scale 0.25; the transpose,
// both matmuls and the softmax are gone.
// CHECK:       module attributes {effc.raise_attention = "2/2 attention chains raised to scaled_dot_product_attention"}
// CHECK-LABEL: func.func @plain(
// CHECK-DAG:     %[[NONE:.*]] = torch.constant.none
// CHECK-DAG:     %[[DROPOUT:.*]] = torch.constant.float 0.000000e+00
// CHECK-DAG:     %[[SCALE:.*]] = torch.constant.float 2.500000e-01
// CHECK:         %[[OUT:.*]] = torch.aten.scaled_dot_product_attention %arg0, %arg1, %arg2, %[[NONE]], %[[DROPOUT]], %{{.*}}, %[[SCALE]], %{{.*}} : {{.*}} -> !torch.vtensor<[1,2,3,4],f32>
// CHECK-NOT:     torch.aten.matmul
// CHECK-NOT:     torch.aten._softmax
// CHECK:         return %[[OUT]]
func.func @plain(%q: !torch.vtensor<[1,2,3,4],f32>, %k: !torch.vtensor<[1,2,3,4],f32>, %v: !torch.vtensor<[1,2,3,4],f32>) -> !torch.vtensor<[1,2,3,4],f32> {
  %false = torch.constant.bool false
  %half = torch.constant.float 5.000000e-01
  %int-2 = torch.constant.int -2
  %int-1 = torch.constant.int -1
  %int2 = torch.constant.int 2
  %qs = torch.aten.mul.Scalar %q, %half : !torch.vtensor<[1,2,3,4],f32>, !torch.float -> !torch.vtensor<[1,2,3,4],f32>
  %kt = torch.aten.transpose.int %k, %int-2, %int-1 : !torch.vtensor<[1,2,3,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,4,3],f32>
  %s = torch.aten.matmul %qs, %kt : !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,4,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  %scaled = torch.aten.div.Scalar %s, %int2 : !torch.vtensor<[1,2,3,3],f32>, !torch.int -> !torch.vtensor<[1,2,3,3],f32>
  %p = torch.aten._softmax %scaled, %int-1, %false : !torch.vtensor<[1,2,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,3],f32>
  %o = torch.aten.matmul %p, %v : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,2,3,4],f32> -> !torch.vtensor<[1,2,3,4],f32>
  return %o : !torch.vtensor<[1,2,3,4],f32>
}

// HF eager attention as imported (BERT, GPT-2, LLaMA): heads flattened for bmm, scores scaled, then an
// additive [1,1,Tq,Tk] mask, softmax decomposed into max/sub/exp/sum/div. The mask becomes sdpa's.
// CHECK-LABEL: func.func @masked(
// CHECK:         %[[SCALE:.*]] = torch.constant.float 5.000000e-01
// CHECK:         %[[OUT:.*]] = torch.aten.scaled_dot_product_attention %arg0, %arg1, %arg2, %arg3, %{{.*}}, %{{.*}}, %[[SCALE]], %{{.*}} : !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,1,3,3],f32>, !torch.float, !torch.bool, !torch.float, !torch.bool -> !torch.vtensor<[1,2,3,4],f32>
// CHECK-NOT:     torch.aten.bmm
// CHECK-NOT:     torch.aten.exp
// CHECK:         return %[[OUT]]
func.func @masked(%q: !torch.vtensor<[1,2,3,4],f32>, %k: !torch.vtensor<[1,2,3,4],f32>, %v: !torch.vtensor<[1,2,3,4],f32>, %mask: !torch.vtensor<[1,1,3,3],f32>) -> !torch.vtensor<[1,2,3,4],f32> {
  %none = torch.constant.none
  %true = torch.constant.bool true
  %float1 = torch.constant.float 1.000000e+00
  %scale = torch.constant.float 5.000000e-01
  %int-1 = torch.constant.int -1
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %perm = torch.prim.ListConstruct %int0, %int1, %int3, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %kt = torch.aten.permute %k, %perm : !torch.vtensor<[1,2,3,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,4,3],f32>
  %flat = torch.prim.ListConstruct %int2, %int3, %int4 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %q3 = torch.aten.view %q, %flat : !torch.vtensor<[1,2,3,4],f32>, !torch.list<int> -> !torch.vtensor<[2,3,4],f32>
  %flat_kt = torch.prim.ListConstruct %int2, %int4, %int3 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %kt3 = torch.aten.view %kt, %flat_kt : !torch.vtensor<[1,2,4,3],f32>, !torch.list<int> -> !torch.vtensor<[2,4,3],f32>
  %s3 = torch.aten.bmm %q3, %kt3 : !torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,4,3],f32> -> !torch.vtensor<[2,3,3],f32>
  %heads = torch.prim.ListConstruct %int1, %int2, %int3, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %s = torch.aten.view %s3, %heads : !torch.vtensor<[2,3,3],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,3],f32>
  %scaled = torch.aten.mul.Scalar %s, %scale : !torch.vtensor<[1,2,3,3],f32>, !torch.float -> !torch.vtensor<[1,2,3,3],f32>
  %masked = torch.aten.add.Tensor %scaled, %mask, %int1 : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,1,3,3],f32>, !torch.int -> !torch.vtensor<[1,2,3,3],f32>
  %max, %indices = torch.aten.max.dim %masked, %int-1, %true : !torch.vtensor<[1,2,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,1],f32>, !torch.vtensor<[1,2,3,1],si64>
  %shifted = torch.aten.sub.Tensor %masked, %max, %float1 : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,2,3,1],f32>, !torch.float -> !torch.vtensor<[1,2,3,3],f32>
  %e = torch.aten.exp %shifted : !torch.vtensor<[1,2,3,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  %last = torch.prim.ListConstruct %int-1 : (!torch.int) -> !torch.list<int>
  %sum = torch.aten.sum.dim_IntList %e, %last, %true, %none : !torch.vtensor<[1,2,3,3],f32>, !torch.list<int>, !torch.bool, !torch.none -> !torch.vtensor<[1,2,3,1],f32>
  %p = torch.aten.div.Tensor %e, %sum : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,2,3,1],f32> -> !torch.vtensor<[1,2,3,3],f32>
  %flat_p = torch.prim.ListConstruct %int2, %int3, %int3 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %p3 = torch.aten.view %p, %flat_p : !torch.vtensor<[1,2,3,3],f32>, !torch.list<int> -> !torch.vtensor<[2,3,3],f32>
  %v3 = torch.aten.view %v, %flat : !torch.vtensor<[1,2,3,4],f32>, !torch.list<int> -> !torch.vtensor<[2,3,4],f32>
  %o3 = torch.aten.bmm %p3, %v3 : !torch.vtensor<[2,3,3],f32>, !torch.vtensor<[2,3,4],f32> -> !torch.vtensor<[2,3,4],f32>
  %split = torch.prim.ListConstruct %int1, %int2, %int3, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %o = torch.aten.view %o3, %split : !torch.vtensor<[2,3,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  return %o : !torch.vtensor<[1,2,3,4],f32>
}

// -----

// Chains that sdpa would compute differently stay exactly as they are (0/5 raised), each counted by reason.
// CHECK:       module attributes {effc.raise_attention = "0/5 attention chains raised to scaled_dot_product_attention; left: attention values used outside the chain (1), mask added before the scaling (1), masked_fill.Scalar on the scores (1), one query row (decode steps stay decomposed) (1), safe-softmax guard (fused attention gives NaN for fully masked rows) (1)"}

// A boolean mask applied with masked_fill.
// CHECK-LABEL: func.func @bool_mask(
// CHECK:         torch.aten.masked_fill.Scalar
// CHECK:         torch.aten._softmax
func.func @bool_mask(%q: !torch.vtensor<[1,2,3,4],f32>, %k: !torch.vtensor<[1,2,3,4],f32>, %v: !torch.vtensor<[1,2,3,4],f32>, %mask: !torch.vtensor<[1,1,3,3],i1>) -> !torch.vtensor<[1,2,3,4],f32> {
  %false = torch.constant.bool false
  %ninf = torch.constant.float 0xFFF0000000000000
  %int-2 = torch.constant.int -2
  %int-1 = torch.constant.int -1
  %kt = torch.aten.transpose.int %k, %int-2, %int-1 : !torch.vtensor<[1,2,3,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,4,3],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,4,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  %masked = torch.aten.masked_fill.Scalar %s, %mask, %ninf : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,1,3,3],i1>, !torch.float -> !torch.vtensor<[1,2,3,3],f32>
  %p = torch.aten._softmax %masked, %int-1, %false : !torch.vtensor<[1,2,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,3],f32>
  %o = torch.aten.matmul %p, %v : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,2,3,4],f32> -> !torch.vtensor<[1,2,3,4],f32>
  return %o : !torch.vtensor<[1,2,3,4],f32>
}

// The probabilities are also returned: raising would compute attention twice.
// CHECK-LABEL: func.func @probs_returned(
// CHECK:         %[[P:.*]] = torch.aten._softmax
// CHECK:         %[[O:.*]] = torch.aten.matmul %[[P]], %arg2
// CHECK:         return %[[O]], %[[P]]
func.func @probs_returned(%q: !torch.vtensor<[1,2,3,4],f32>, %k: !torch.vtensor<[1,2,3,4],f32>, %v: !torch.vtensor<[1,2,3,4],f32>) -> (!torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,3],f32>) {
  %false = torch.constant.bool false
  %int-2 = torch.constant.int -2
  %int-1 = torch.constant.int -1
  %kt = torch.aten.transpose.int %k, %int-2, %int-1 : !torch.vtensor<[1,2,3,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,4,3],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,4,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  %p = torch.aten._softmax %s, %int-1, %false : !torch.vtensor<[1,2,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,3],f32>
  %o = torch.aten.matmul %p, %v : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,2,3,4],f32> -> !torch.vtensor<[1,2,3,4],f32>
  return %o, %p : !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,3],f32>
}

// torch's own decomposition of sdpa guards rows whose every score is -inf; IREE's fused attention
// would give NaN there.
// CHECK-LABEL: func.func @guard(
// CHECK:         torch.aten.all.dim
// CHECK:         torch.aten.where.self
func.func @guard(%q: !torch.vtensor<[1,2,3,4],f32>, %k: !torch.vtensor<[1,2,3,4],f32>, %v: !torch.vtensor<[1,2,3,4],f32>, %mask: !torch.vtensor<[1,1,3,3],f32>) -> !torch.vtensor<[1,2,3,4],f32> {
  %false = torch.constant.bool false
  %true = torch.constant.bool true
  %ninf = torch.constant.float 0xFFF0000000000000
  %zeros = torch.vtensor.literal(dense<0.000000e+00> : tensor<1x2x3x3xf32>) : !torch.vtensor<[1,2,3,3],f32>
  %int-2 = torch.constant.int -2
  %int-1 = torch.constant.int -1
  %int1 = torch.constant.int 1
  %kt = torch.aten.transpose.int %k, %int-2, %int-1 : !torch.vtensor<[1,2,3,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,4,3],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,4,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  %masked = torch.aten.add.Tensor %s, %mask, %int1 : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,1,3,3],f32>, !torch.int -> !torch.vtensor<[1,2,3,3],f32>
  %p = torch.aten._softmax %masked, %int-1, %false : !torch.vtensor<[1,2,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,3],f32>
  %inf = torch.aten.eq.Scalar %masked, %ninf : !torch.vtensor<[1,2,3,3],f32>, !torch.float -> !torch.vtensor<[1,2,3,3],i1>
  %all = torch.aten.all.dim %inf, %int-1, %true : !torch.vtensor<[1,2,3,3],i1>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,1],i1>
  %safe = torch.aten.where.self %all, %zeros, %p : !torch.vtensor<[1,2,3,1],i1>, !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,2,3,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  %o = torch.aten.matmul %safe, %v : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,2,3,4],f32> -> !torch.vtensor<[1,2,3,4],f32>
  return %o : !torch.vtensor<[1,2,3,4],f32>
}

// The mask is scaled along with the scores; sdpa adds it after scaling.
// CHECK-LABEL: func.func @mask_before_scale(
// CHECK:         torch.aten.add.Tensor
// CHECK:         torch.aten.mul.Scalar
func.func @mask_before_scale(%q: !torch.vtensor<[1,2,3,4],f32>, %k: !torch.vtensor<[1,2,3,4],f32>, %v: !torch.vtensor<[1,2,3,4],f32>, %mask: !torch.vtensor<[1,1,3,3],f32>) -> !torch.vtensor<[1,2,3,4],f32> {
  %false = torch.constant.bool false
  %half = torch.constant.float 5.000000e-01
  %int-2 = torch.constant.int -2
  %int-1 = torch.constant.int -1
  %int1 = torch.constant.int 1
  %kt = torch.aten.transpose.int %k, %int-2, %int-1 : !torch.vtensor<[1,2,3,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,4,3],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,4,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  %masked = torch.aten.add.Tensor %s, %mask, %int1 : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,1,3,3],f32>, !torch.int -> !torch.vtensor<[1,2,3,3],f32>
  %scaled = torch.aten.mul.Scalar %masked, %half : !torch.vtensor<[1,2,3,3],f32>, !torch.float -> !torch.vtensor<[1,2,3,3],f32>
  %p = torch.aten._softmax %scaled, %int-1, %false : !torch.vtensor<[1,2,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,3],f32>
  %o = torch.aten.matmul %p, %v : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,2,3,4],f32> -> !torch.vtensor<[1,2,3,4],f32>
  return %o : !torch.vtensor<[1,2,3,4],f32>
}

// A decode step (one query row) stays decomposed, as the importer keeps it.
// CHECK-LABEL: func.func @one_query(
// CHECK:         torch.aten._softmax
func.func @one_query(%q: !torch.vtensor<[1,2,1,4],f32>, %k: !torch.vtensor<[1,2,3,4],f32>, %v: !torch.vtensor<[1,2,3,4],f32>) -> !torch.vtensor<[1,2,1,4],f32> {
  %false = torch.constant.bool false
  %int-2 = torch.constant.int -2
  %int-1 = torch.constant.int -1
  %kt = torch.aten.transpose.int %k, %int-2, %int-1 : !torch.vtensor<[1,2,3,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,4,3],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,1,4],f32>, !torch.vtensor<[1,2,4,3],f32> -> !torch.vtensor<[1,2,1,3],f32>
  %p = torch.aten._softmax %s, %int-1, %false : !torch.vtensor<[1,2,1,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,1,3],f32>
  %o = torch.aten.matmul %p, %v : !torch.vtensor<[1,2,1,3],f32>, !torch.vtensor<[1,2,3,4],f32> -> !torch.vtensor<[1,2,1,4],f32>
  return %o : !torch.vtensor<[1,2,1,4],f32>
}
