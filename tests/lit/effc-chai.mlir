// effc-chai: CHAI computes attention scores only for each cluster's representative head and shares
// them. Plan chai-mha.json clusters 4 heads as {0,2} (representative 2), {1}, {3}; chai-gqa.json
// has 4 query heads on 2 KV heads with both representatives (0, 1) on KV head 0. Inputs are one
// layer with hidden size 8, head size 2 and 3 tokens.

// RUN: effc-opt %s --split-input-file \
// RUN:   --pass-pipeline='builtin.module(effc-chai{plan=%S/Inputs/chai-mha.json})' | FileCheck %s --check-prefix=MHA

// A plan that does not fit the module, and a module without attention, fail with one line.
// RUN: not effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-chai{plan=%S/Inputs/chai-gqa.json})' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=KV-HEADS
// KV-HEADS: effc: error: CHAI plan layer 0 is for 4 heads / 2 KV heads but function 'sdpa' of the module has 4 / 4 there; calibrate a plan for this model
// RUN: not effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-chai{plan=%S/Inputs/chai-bad-head.json})' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=HEAD
// HEAD: effc: error: CHAI plan '{{.*}}chai-bad-head.json': layer 0 names head 7, but the layer has 4 heads (0..3)
// RUN: not effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-chai{plan=%S/Inputs/chai-two-layers.json})' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=LAYERS
// LAYERS: effc: error: CHAI plan for 'lit-mha-2' has 2 attention layers but function 'sdpa' of the module has 1; calibrate a plan for this model with 'effc chai calibrate'
// RUN: not effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-chai{plan=%S/Inputs/chai-other-model.json})' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=FINGERPRINT
// FINGERPRINT: effc: error: CHAI plan fingerprint 0123456789abcdef (model 'lit-other') does not match function 'sdpa' of the module (fingerprint b828a8bbc0f07063); calibrate a plan for this model
// RUN: not effc-opt %S/Inputs/chai-no-attention.mlir --pass-pipeline='builtin.module(effc-chai{plan=%S/Inputs/chai-mha.json})' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=NO-ATTENTION
// NO-ATTENTION: effc: error: effc-chai: the module has no attention ({{.*}}); there is nothing to cluster
// RUN: not effc-opt %s --pass-pipeline='builtin.module(effc-chai)' 2>&1 | FileCheck %s --check-prefix=NO-PLAN
// NO-PLAN: effc: error: effc-chai needs a plan: effc-chai{plan=plan.json} (make one with 'effc chai calibrate')

// scaled_dot_product_attention stays fused: one sdpa for the two single-head clusters and one for the
// two-member cluster, whose members' V sit side by side ([1,1,3,4]). Q and K projections keep the
// 3 representatives' rows ([6,8]); V's rows are reordered cluster by cluster; heads are put back
// in order at the end. The selected weight rows are literals of their own (the full weights leave the module).
// MHA:       module attributes {effc.chai = "1/1 attention layers rewritten (chai, static); QK^T heads 4->3, K heads 4->3
// MHA-LABEL: func.func @sdpa(
// MHA:         torch.vtensor.literal(dense_resource<effc_selected_weight{{.*}}> : tensor<6x8xf32>) : !torch.vtensor<[6,8],f32>
// MHA:         torch.aten.mm %{{.*}} -> !torch.vtensor<[3,6],f32>
// MHA:         torch.vtensor.literal(dense_resource<effc_selected_weight{{.*}}> : tensor<6x8xf32>) : !torch.vtensor<[6,8],f32>
// MHA:         torch.aten.mm %{{.*}} -> !torch.vtensor<[3,6],f32>
// MHA:         torch.vtensor.literal(dense_resource<effc_selected_weight{{.*}}> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
// MHA:         torch.aten.scaled_dot_product_attention %{{.*}} : !torch.vtensor<[1,2,3,2],f32>, !torch.vtensor<[1,2,3,2],f32>, !torch.vtensor<[1,2,3,2],f32>, {{.*}} -> !torch.vtensor<[1,2,3,2],f32>
// MHA:         torch.aten.scaled_dot_product_attention %{{.*}} : !torch.vtensor<[1,1,3,2],f32>, !torch.vtensor<[1,1,3,2],f32>, !torch.vtensor<[1,1,3,4],f32>, {{.*}} -> !torch.vtensor<[1,1,3,4],f32>
// MHA:         torch.aten.cat %{{.*}} -> !torch.vtensor<[1,4,3,2],f32>
// MHA:         torch.vtensor.literal(dense<[2, 0, 3, 1]> : tensor<4xsi64>)
// MHA-NOT:     torch.aten.scaled_dot_product_attention
// MHA:         return

func.func @sdpa(%x: !torch.vtensor<[3,8],f32>) -> !torch.vtensor<[1,4,3,2],f32> {
  %none = torch.constant.none
  %false = torch.constant.bool false
  %float0 = torch.constant.float 0.000000e+00
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %t = torch.prim.ListConstruct %int1, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %split = torch.prim.ListConstruct %int1, %int3, %int4, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %heads = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %wq = torch.vtensor.literal(dense<1.000000e-01> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %wk = torch.vtensor.literal(dense<2.000000e-01> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %wv = torch.vtensor.literal(dense<3.000000e-01> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %wqt = torch.aten.permute %wq, %t : !torch.vtensor<[8,8],f32>, !torch.list<int> -> !torch.vtensor<[8,8],f32>
  %q2 = torch.aten.mm %x, %wqt : !torch.vtensor<[3,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[3,8],f32>
  %q3 = torch.aten.view %q2, %split : !torch.vtensor<[3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,4,2],f32>
  %q = torch.aten.permute %q3, %heads : !torch.vtensor<[1,3,4,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,3,2],f32>
  %wkt = torch.aten.permute %wk, %t : !torch.vtensor<[8,8],f32>, !torch.list<int> -> !torch.vtensor<[8,8],f32>
  %k2 = torch.aten.mm %x, %wkt : !torch.vtensor<[3,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[3,8],f32>
  %k3 = torch.aten.view %k2, %split : !torch.vtensor<[3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,4,2],f32>
  %k = torch.aten.permute %k3, %heads : !torch.vtensor<[1,3,4,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,3,2],f32>
  %wvt = torch.aten.permute %wv, %t : !torch.vtensor<[8,8],f32>, !torch.list<int> -> !torch.vtensor<[8,8],f32>
  %v2 = torch.aten.mm %x, %wvt : !torch.vtensor<[3,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[3,8],f32>
  %v3 = torch.aten.view %v2, %split : !torch.vtensor<[3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,4,2],f32>
  %v = torch.aten.permute %v3, %heads : !torch.vtensor<[1,3,4,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,3,2],f32>
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %none, %float0, %false, %none, %false : !torch.vtensor<[1,4,3,2],f32>, !torch.vtensor<[1,4,3,2],f32>, !torch.vtensor<[1,4,3,2],f32>, !torch.none, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,4,3,2],f32>
  return %o : !torch.vtensor<[1,4,3,2],f32>
}

// -----

// The matmul → scale → mask → softmax → matmul chain (a model's eager attention, causal mask added):
// scores and softmax for the 3 representatives only ([1,3,3,3]), then each head takes its cluster's
// probabilities (heads 0,1,2,3 → clusters 0,1,0,2) before the product with its own V ([1,4,3,3]).
// MHA-LABEL: func.func @chain(
// MHA:         torch.vtensor.literal(dense_resource<effc_selected_weight{{.*}}> : tensor<6x8xf32>) : !torch.vtensor<[6,8],f32>
// MHA:         torch.aten.mm %{{.*}} -> !torch.vtensor<[3,6],f32>
// MHA:         torch.vtensor.literal(dense_resource<effc_selected_weight{{.*}}> : tensor<6x8xf32>) : !torch.vtensor<[6,8],f32>
// MHA:         torch.aten.mm %{{.*}} -> !torch.vtensor<[3,6],f32>
// MHA:         torch.aten.matmul %{{.*}} : !torch.vtensor<[1,3,3,2],f32>, !torch.vtensor<[1,3,2,3],f32> -> !torch.vtensor<[1,3,3,3],f32>
// MHA:         %[[PROBS:.*]] = torch.aten._softmax %{{.*}} -> !torch.vtensor<[1,3,3,3],f32>
// MHA:         %[[OWNER:.*]] = torch.vtensor.literal(dense<[0, 1, 0, 2]> : tensor<4xsi64>)
// MHA:         %[[SHARED:.*]] = torch.aten.index_select %[[PROBS]], %{{.*}}, %[[OWNER]] : {{.*}} -> !torch.vtensor<[1,4,3,3],f32>
// MHA:         torch.aten.matmul %[[SHARED]], %{{.*}} : !torch.vtensor<[1,4,3,3],f32>, !torch.vtensor<[1,4,3,2],f32> -> !torch.vtensor<[1,4,3,2],f32>

func.func @chain(%x: !torch.vtensor<[3,8],f32>) -> !torch.vtensor<[1,4,3,2],f32> {
  %false = torch.constant.bool false
  %scale = torch.constant.float 0.70710678118654746
  %int-1 = torch.constant.int -1
  %int-2 = torch.constant.int -2
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %t = torch.prim.ListConstruct %int1, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %split = torch.prim.ListConstruct %int1, %int3, %int4, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %heads = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %wq = torch.vtensor.literal(dense<1.000000e-01> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %wk = torch.vtensor.literal(dense<2.000000e-01> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %wv = torch.vtensor.literal(dense<3.000000e-01> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %causal = torch.vtensor.literal(dense<[[[[0.0, 0xFF800000, 0xFF800000], [0.0, 0.0, 0xFF800000], [0.0, 0.0, 0.0]]]]> : tensor<1x1x3x3xf32>) : !torch.vtensor<[1,1,3,3],f32>
  %wqt = torch.aten.permute %wq, %t : !torch.vtensor<[8,8],f32>, !torch.list<int> -> !torch.vtensor<[8,8],f32>
  %q2 = torch.aten.mm %x, %wqt : !torch.vtensor<[3,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[3,8],f32>
  %q3 = torch.aten.view %q2, %split : !torch.vtensor<[3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,4,2],f32>
  %q = torch.aten.permute %q3, %heads : !torch.vtensor<[1,3,4,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,3,2],f32>
  %wkt = torch.aten.permute %wk, %t : !torch.vtensor<[8,8],f32>, !torch.list<int> -> !torch.vtensor<[8,8],f32>
  %k2 = torch.aten.mm %x, %wkt : !torch.vtensor<[3,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[3,8],f32>
  %k3 = torch.aten.view %k2, %split : !torch.vtensor<[3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,4,2],f32>
  %k = torch.aten.permute %k3, %heads : !torch.vtensor<[1,3,4,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,3,2],f32>
  %wvt = torch.aten.permute %wv, %t : !torch.vtensor<[8,8],f32>, !torch.list<int> -> !torch.vtensor<[8,8],f32>
  %v2 = torch.aten.mm %x, %wvt : !torch.vtensor<[3,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[3,8],f32>
  %v3 = torch.aten.view %v2, %split : !torch.vtensor<[3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,4,2],f32>
  %v = torch.aten.permute %v3, %heads : !torch.vtensor<[1,3,4,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,3,2],f32>
  %kt = torch.aten.transpose.int %k, %int-2, %int-1 : !torch.vtensor<[1,4,3,2],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,2,3],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,3,2],f32>, !torch.vtensor<[1,4,2,3],f32> -> !torch.vtensor<[1,4,3,3],f32>
  %scaled = torch.aten.mul.Scalar %s, %scale : !torch.vtensor<[1,4,3,3],f32>, !torch.float -> !torch.vtensor<[1,4,3,3],f32>
  %masked = torch.aten.add.Tensor %scaled, %causal, %int1 : !torch.vtensor<[1,4,3,3],f32>, !torch.vtensor<[1,1,3,3],f32>, !torch.int -> !torch.vtensor<[1,4,3,3],f32>
  %p = torch.aten._softmax %masked, %int-1, %false : !torch.vtensor<[1,4,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,3,3],f32>
  %o = torch.aten.matmul %p, %v : !torch.vtensor<[1,4,3,3],f32>, !torch.vtensor<[1,4,3,2],f32> -> !torch.vtensor<[1,4,3,2],f32>
  return %o : !torch.vtensor<[1,4,3,2],f32>
}

// -----

// A longer sequence (6 tokens, head size 2): copying 6x6 probabilities per head would cost more than
// laying out V and the output, so each size class multiplies its representatives' probabilities by
// its members' V side by side: [1,2,6,6] x [1,2,6,2] for the single heads, [1,1,6,6] x [1,1,6,4] for
// the pair, then heads go back in order.
// MHA-LABEL: func.func @long_chain(
// MHA:         torch.aten._softmax %{{.*}} -> !torch.vtensor<[1,3,6,6],f32>
// MHA:         torch.aten.matmul %{{.*}} : !torch.vtensor<[1,2,6,6],f32>, !torch.vtensor<[1,2,6,2],f32> -> !torch.vtensor<[1,2,6,2],f32>
// MHA:         torch.aten.matmul %{{.*}} : !torch.vtensor<[1,1,6,6],f32>, !torch.vtensor<[1,1,6,4],f32> -> !torch.vtensor<[1,1,6,4],f32>
// MHA:         torch.aten.cat %{{.*}} -> !torch.vtensor<[1,4,6,2],f32>
// MHA:         torch.vtensor.literal(dense<[2, 0, 3, 1]> : tensor<4xsi64>)
// MHA-NOT:     -> !torch.vtensor<[1,4,6,6],f32>
// MHA:         return

func.func @long_chain(%x: !torch.vtensor<[6,8],f32>) -> !torch.vtensor<[1,4,6,2],f32> {
  %false = torch.constant.bool false
  %scale = torch.constant.float 0.70710678118654746
  %int-1 = torch.constant.int -1
  %int-2 = torch.constant.int -2
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int6 = torch.constant.int 6
  %t = torch.prim.ListConstruct %int1, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %split = torch.prim.ListConstruct %int1, %int6, %int4, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %heads = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %wq = torch.vtensor.literal(dense<1.000000e-01> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %wk = torch.vtensor.literal(dense<2.000000e-01> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %wv = torch.vtensor.literal(dense<3.000000e-01> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %causal = torch.vtensor.literal(dense<[[[[0.0, 0xFF800000, 0xFF800000, 0xFF800000, 0xFF800000, 0xFF800000], [0.0, 0.0, 0xFF800000, 0xFF800000, 0xFF800000, 0xFF800000], [0.0, 0.0, 0.0, 0xFF800000, 0xFF800000, 0xFF800000], [0.0, 0.0, 0.0, 0.0, 0xFF800000, 0xFF800000], [0.0, 0.0, 0.0, 0.0, 0.0, 0xFF800000], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]]]> : tensor<1x1x6x6xf32>) : !torch.vtensor<[1,1,6,6],f32>
  %wqt = torch.aten.permute %wq, %t : !torch.vtensor<[8,8],f32>, !torch.list<int> -> !torch.vtensor<[8,8],f32>
  %q2 = torch.aten.mm %x, %wqt : !torch.vtensor<[6,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[6,8],f32>
  %q3 = torch.aten.view %q2, %split : !torch.vtensor<[6,8],f32>, !torch.list<int> -> !torch.vtensor<[1,6,4,2],f32>
  %q = torch.aten.permute %q3, %heads : !torch.vtensor<[1,6,4,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,6,2],f32>
  %wkt = torch.aten.permute %wk, %t : !torch.vtensor<[8,8],f32>, !torch.list<int> -> !torch.vtensor<[8,8],f32>
  %k2 = torch.aten.mm %x, %wkt : !torch.vtensor<[6,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[6,8],f32>
  %k3 = torch.aten.view %k2, %split : !torch.vtensor<[6,8],f32>, !torch.list<int> -> !torch.vtensor<[1,6,4,2],f32>
  %k = torch.aten.permute %k3, %heads : !torch.vtensor<[1,6,4,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,6,2],f32>
  %wvt = torch.aten.permute %wv, %t : !torch.vtensor<[8,8],f32>, !torch.list<int> -> !torch.vtensor<[8,8],f32>
  %v2 = torch.aten.mm %x, %wvt : !torch.vtensor<[6,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[6,8],f32>
  %v3 = torch.aten.view %v2, %split : !torch.vtensor<[6,8],f32>, !torch.list<int> -> !torch.vtensor<[1,6,4,2],f32>
  %v = torch.aten.permute %v3, %heads : !torch.vtensor<[1,6,4,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,6,2],f32>
  %kt = torch.aten.transpose.int %k, %int-2, %int-1 : !torch.vtensor<[1,4,6,2],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,2,6],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,6,2],f32>, !torch.vtensor<[1,4,2,6],f32> -> !torch.vtensor<[1,4,6,6],f32>
  %scaled = torch.aten.mul.Scalar %s, %scale : !torch.vtensor<[1,4,6,6],f32>, !torch.float -> !torch.vtensor<[1,4,6,6],f32>
  %masked = torch.aten.add.Tensor %scaled, %causal, %int1 : !torch.vtensor<[1,4,6,6],f32>, !torch.vtensor<[1,1,6,6],f32>, !torch.int -> !torch.vtensor<[1,4,6,6],f32>
  %p = torch.aten._softmax %masked, %int-1, %false : !torch.vtensor<[1,4,6,6],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,6,6],f32>
  %o = torch.aten.matmul %p, %v : !torch.vtensor<[1,4,6,6],f32>, !torch.vtensor<[1,4,6,2],f32> -> !torch.vtensor<[1,4,6,2],f32>
  return %o : !torch.vtensor<[1,4,6,2],f32>
}
