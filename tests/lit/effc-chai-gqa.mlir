// effc-chai on grouped-query attention (4 query heads on 2 KV heads, head size 2). Plan
// chai-gqa.json: clusters {0,2} and {1,3} with representatives 0 and 1, both on KV head 0, so the K
// projection and the K cache keep one KV head out of two; V keeps both.

// RUN: effc-opt %s --split-input-file \
// RUN:   --pass-pipeline='builtin.module(effc-chai{plan=%S/Inputs/chai-gqa.json})' | FileCheck %s
// Without shrink-io the decode step's K-cache argument keeps its type and is narrowed inside.
// RUN: effc-opt %s --split-input-file \
// RUN:   --pass-pipeline='builtin.module(effc-chai{plan=%S/Inputs/chai-gqa.json shrink-io=false})' | FileCheck %s --check-prefix=KEEP-IO

// Prefill: repeat_kv (unsqueeze, broadcast_to, view) is seen through, K's weight keeps 1 KV head
// ([2,8]) and is repeated to the 2 representatives as repeat_kv does it (a broadcast, not a gather);
// the returned K cache has 1 head.
// CHECK-LABEL: func.func @prefill(
// CHECK-SAME:    -> (!torch.vtensor<[1,4,3,2],f32>, !torch.vtensor<[1,1,3,2],f32>)
// CHECK:         torch.vtensor.literal(dense_resource<effc_selected_weight{{.*}}> : tensor<4x8xf32>) : !torch.vtensor<[4,8],f32>
// CHECK:         torch.vtensor.literal(dense_resource<effc_selected_weight{{.*}}> : tensor<2x8xf32>) : !torch.vtensor<[2,8],f32>
// CHECK:         %[[K1:.*]] = torch.aten.permute %{{.*}} -> !torch.vtensor<[1,1,3,2],f32>
// CHECK:         %[[K1U:.*]] = torch.aten.unsqueeze %[[K1]], %{{.*}} -> !torch.vtensor<[1,1,1,3,2],f32>
// CHECK:         %[[K1B:.*]] = torch.aten.broadcast_to %[[K1U]], %{{.*}} -> !torch.vtensor<[1,1,2,3,2],f32>
// CHECK:         torch.aten.view %[[K1B]], %{{.*}} -> !torch.vtensor<[1,2,3,2],f32>
// CHECK:         torch.aten.matmul %{{.*}} : !torch.vtensor<[1,2,3,2],f32>, !torch.vtensor<[1,2,2,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
// CHECK:         torch.vtensor.literal(dense<[0, 1, 0, 1]> : tensor<4xsi64>)
// CHECK:         torch.aten.index_select {{.*}} -> !torch.vtensor<[1,4,3,3],f32>
// CHECK:         return %{{.*}}, %[[K1]] : !torch.vtensor<[1,4,3,2],f32>, !torch.vtensor<[1,1,3,2],f32>

func.func @prefill(%x: !torch.vtensor<[3,8],f32>) -> (!torch.vtensor<[1,4,3,2],f32>, !torch.vtensor<[1,2,3,2],f32>) {
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
  %split_kv = torch.prim.ListConstruct %int1, %int3, %int2, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %heads = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %bcast = torch.prim.ListConstruct %int1, %int2, %int2, %int3, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %merge = torch.prim.ListConstruct %int1, %int4, %int3, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %wq = torch.vtensor.literal(dense<1.000000e-01> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %wk = torch.vtensor.literal(dense<2.000000e-01> : tensor<4x8xf32>) : !torch.vtensor<[4,8],f32>
  %wv = torch.vtensor.literal(dense<3.000000e-01> : tensor<4x8xf32>) : !torch.vtensor<[4,8],f32>
  %wqt = torch.aten.permute %wq, %t : !torch.vtensor<[8,8],f32>, !torch.list<int> -> !torch.vtensor<[8,8],f32>
  %q2 = torch.aten.mm %x, %wqt : !torch.vtensor<[3,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[3,8],f32>
  %q3 = torch.aten.view %q2, %split : !torch.vtensor<[3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,4,2],f32>
  %q = torch.aten.permute %q3, %heads : !torch.vtensor<[1,3,4,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,3,2],f32>
  %wkt = torch.aten.permute %wk, %t : !torch.vtensor<[4,8],f32>, !torch.list<int> -> !torch.vtensor<[8,4],f32>
  %k2 = torch.aten.mm %x, %wkt : !torch.vtensor<[3,8],f32>, !torch.vtensor<[8,4],f32> -> !torch.vtensor<[3,4],f32>
  %k3 = torch.aten.view %k2, %split_kv : !torch.vtensor<[3,4],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,2],f32>
  %k = torch.aten.permute %k3, %heads : !torch.vtensor<[1,3,2,2],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,2],f32>
  %k5 = torch.aten.unsqueeze %k, %int2 : !torch.vtensor<[1,2,3,2],f32>, !torch.int -> !torch.vtensor<[1,2,1,3,2],f32>
  %kb = torch.aten.broadcast_to %k5, %bcast : !torch.vtensor<[1,2,1,3,2],f32>, !torch.list<int> -> !torch.vtensor<[1,2,2,3,2],f32>
  %kr = torch.aten.view %kb, %merge : !torch.vtensor<[1,2,2,3,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,3,2],f32>
  %wvt = torch.aten.permute %wv, %t : !torch.vtensor<[4,8],f32>, !torch.list<int> -> !torch.vtensor<[8,4],f32>
  %v2 = torch.aten.mm %x, %wvt : !torch.vtensor<[3,8],f32>, !torch.vtensor<[8,4],f32> -> !torch.vtensor<[3,4],f32>
  %v3 = torch.aten.view %v2, %split_kv : !torch.vtensor<[3,4],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,2],f32>
  %v = torch.aten.permute %v3, %heads : !torch.vtensor<[1,3,2,2],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,2],f32>
  %v5 = torch.aten.unsqueeze %v, %int2 : !torch.vtensor<[1,2,3,2],f32>, !torch.int -> !torch.vtensor<[1,2,1,3,2],f32>
  %vb = torch.aten.broadcast_to %v5, %bcast : !torch.vtensor<[1,2,1,3,2],f32>, !torch.list<int> -> !torch.vtensor<[1,2,2,3,2],f32>
  %vr = torch.aten.view %vb, %merge : !torch.vtensor<[1,2,2,3,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,3,2],f32>
  %kt = torch.aten.transpose.int %kr, %int-2, %int-1 : !torch.vtensor<[1,4,3,2],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,2,3],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,3,2],f32>, !torch.vtensor<[1,4,2,3],f32> -> !torch.vtensor<[1,4,3,3],f32>
  %scaled = torch.aten.mul.Scalar %s, %scale : !torch.vtensor<[1,4,3,3],f32>, !torch.float -> !torch.vtensor<[1,4,3,3],f32>
  %p = torch.aten._softmax %scaled, %int-1, %false : !torch.vtensor<[1,4,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,3,3],f32>
  %o = torch.aten.matmul %p, %vr : !torch.vtensor<[1,4,3,3],f32>, !torch.vtensor<[1,4,3,2],f32> -> !torch.vtensor<[1,4,3,2],f32>
  return %o, %k : !torch.vtensor<[1,4,3,2],f32>, !torch.vtensor<[1,2,3,2],f32>
}

// -----

// Decode step: the K cache is an argument read with the new token's K appended (cat); with
// shrink-io the argument and the returned new K row take 1 KV head, the V cache keeps 2.
// CHECK-LABEL: func.func @step(
// CHECK-SAME:    %[[X:.*]]: !torch.vtensor<[1,8],f32>, %[[KCACHE:.*]]: !torch.vtensor<[1,1,4,2],f32>, %[[VCACHE:.*]]: !torch.vtensor<[1,2,4,2],f32>)
// CHECK-SAME:    -> (!torch.vtensor<[1,4,1,2],f32>, !torch.vtensor<[1,1,1,2],f32>)
// CHECK:         %[[KNEW:.*]] = torch.aten.permute %{{.*}} -> !torch.vtensor<[1,1,1,2],f32>
// CHECK:         torch.prim.ListConstruct %[[KCACHE]], %[[KNEW]]
// CHECK:         torch.aten.cat %{{.*}} -> !torch.vtensor<[1,1,5,2],f32>
// CHECK:         torch.aten.matmul %{{.*}} -> !torch.vtensor<[1,2,1,5],f32>
// CHECK:         return %{{.*}}, %[[KNEW]] : !torch.vtensor<[1,4,1,2],f32>, !torch.vtensor<[1,1,1,2],f32>
// KEEP-IO-LABEL: func.func @step(
// KEEP-IO-SAME:    %{{.*}}: !torch.vtensor<[1,8],f32>, %[[KCACHE:.*]]: !torch.vtensor<[1,2,4,2],f32>, %{{.*}}: !torch.vtensor<[1,2,4,2],f32>)
// KEEP-IO:         torch.aten.index_select %[[KCACHE]], {{.*}} -> !torch.vtensor<[1,1,4,2],f32>

func.func @step(%x: !torch.vtensor<[1,8],f32>, %kcache: !torch.vtensor<[1,2,4,2],f32>, %vcache: !torch.vtensor<[1,2,4,2],f32>) -> (!torch.vtensor<[1,4,1,2],f32>, !torch.vtensor<[1,2,1,2],f32>) {
  %false = torch.constant.bool false
  %scale = torch.constant.float 0.70710678118654746
  %int-1 = torch.constant.int -1
  %int-2 = torch.constant.int -2
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int5 = torch.constant.int 5
  %t = torch.prim.ListConstruct %int1, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %split = torch.prim.ListConstruct %int1, %int1, %int4, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %split_kv = torch.prim.ListConstruct %int1, %int1, %int2, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %heads = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %bcast = torch.prim.ListConstruct %int1, %int2, %int2, %int5, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %merge = torch.prim.ListConstruct %int1, %int4, %int5, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %wq = torch.vtensor.literal(dense<1.000000e-01> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %wk = torch.vtensor.literal(dense<2.000000e-01> : tensor<4x8xf32>) : !torch.vtensor<[4,8],f32>
  %wv = torch.vtensor.literal(dense<3.000000e-01> : tensor<4x8xf32>) : !torch.vtensor<[4,8],f32>
  %wqt = torch.aten.permute %wq, %t : !torch.vtensor<[8,8],f32>, !torch.list<int> -> !torch.vtensor<[8,8],f32>
  %q2 = torch.aten.mm %x, %wqt : !torch.vtensor<[1,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[1,8],f32>
  %q3 = torch.aten.view %q2, %split : !torch.vtensor<[1,8],f32>, !torch.list<int> -> !torch.vtensor<[1,1,4,2],f32>
  %q = torch.aten.permute %q3, %heads : !torch.vtensor<[1,1,4,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,1,2],f32>
  %wkt = torch.aten.permute %wk, %t : !torch.vtensor<[4,8],f32>, !torch.list<int> -> !torch.vtensor<[8,4],f32>
  %k2 = torch.aten.mm %x, %wkt : !torch.vtensor<[1,8],f32>, !torch.vtensor<[8,4],f32> -> !torch.vtensor<[1,4],f32>
  %k3 = torch.aten.view %k2, %split_kv : !torch.vtensor<[1,4],f32>, !torch.list<int> -> !torch.vtensor<[1,1,2,2],f32>
  %knew = torch.aten.permute %k3, %heads : !torch.vtensor<[1,1,2,2],f32>, !torch.list<int> -> !torch.vtensor<[1,2,1,2],f32>
  %klist = torch.prim.ListConstruct %kcache, %knew : (!torch.vtensor<[1,2,4,2],f32>, !torch.vtensor<[1,2,1,2],f32>) -> !torch.list<vtensor>
  %k = torch.aten.cat %klist, %int2 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[1,2,5,2],f32>
  %k5 = torch.aten.unsqueeze %k, %int2 : !torch.vtensor<[1,2,5,2],f32>, !torch.int -> !torch.vtensor<[1,2,1,5,2],f32>
  %kb = torch.aten.broadcast_to %k5, %bcast : !torch.vtensor<[1,2,1,5,2],f32>, !torch.list<int> -> !torch.vtensor<[1,2,2,5,2],f32>
  %kr = torch.aten.view %kb, %merge : !torch.vtensor<[1,2,2,5,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,5,2],f32>
  %wvt = torch.aten.permute %wv, %t : !torch.vtensor<[4,8],f32>, !torch.list<int> -> !torch.vtensor<[8,4],f32>
  %v2 = torch.aten.mm %x, %wvt : !torch.vtensor<[1,8],f32>, !torch.vtensor<[8,4],f32> -> !torch.vtensor<[1,4],f32>
  %v3 = torch.aten.view %v2, %split_kv : !torch.vtensor<[1,4],f32>, !torch.list<int> -> !torch.vtensor<[1,1,2,2],f32>
  %vnew = torch.aten.permute %v3, %heads : !torch.vtensor<[1,1,2,2],f32>, !torch.list<int> -> !torch.vtensor<[1,2,1,2],f32>
  %vlist = torch.prim.ListConstruct %vcache, %vnew : (!torch.vtensor<[1,2,4,2],f32>, !torch.vtensor<[1,2,1,2],f32>) -> !torch.list<vtensor>
  %v = torch.aten.cat %vlist, %int2 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[1,2,5,2],f32>
  %v5 = torch.aten.unsqueeze %v, %int2 : !torch.vtensor<[1,2,5,2],f32>, !torch.int -> !torch.vtensor<[1,2,1,5,2],f32>
  %vb = torch.aten.broadcast_to %v5, %bcast : !torch.vtensor<[1,2,1,5,2],f32>, !torch.list<int> -> !torch.vtensor<[1,2,2,5,2],f32>
  %vr = torch.aten.view %vb, %merge : !torch.vtensor<[1,2,2,5,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,5,2],f32>
  %kt = torch.aten.transpose.int %kr, %int-2, %int-1 : !torch.vtensor<[1,4,5,2],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,2,5],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,1,2],f32>, !torch.vtensor<[1,4,2,5],f32> -> !torch.vtensor<[1,4,1,5],f32>
  %scaled = torch.aten.mul.Scalar %s, %scale : !torch.vtensor<[1,4,1,5],f32>, !torch.float -> !torch.vtensor<[1,4,1,5],f32>
  %p = torch.aten._softmax %scaled, %int-1, %false : !torch.vtensor<[1,4,1,5],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,1,5],f32>
  %o = torch.aten.matmul %p, %vr : !torch.vtensor<[1,4,1,5],f32>, !torch.vtensor<[1,4,5,2],f32> -> !torch.vtensor<[1,4,1,2],f32>
  return %o, %knew : !torch.vtensor<[1,4,1,2],f32>, !torch.vtensor<[1,2,1,2],f32>
}
