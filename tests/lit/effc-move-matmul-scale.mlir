// effc-move-matmul-scale moves a constant scale on one matmul operand, through ops that only move elements, to
// the other operand where that one is smaller: torch's k·sqrt(scale) over a decode step's whole KV cache becomes a
// second scale of its one query row. Scales it leaves are counted by reason in the module attribute
// effc.move_matmul_scale.

// RUN: effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-move-matmul-scale)' | FileCheck %s

// A decode step's q·kᵀ as torch decomposes sdpa: q [2,1,4] and the cache's keys [2,4,6], each times sqrt(scale).
// The keys' scale goes (through their permute and view) onto q, which is then scaled twice; q's own scale stays,
// since the keys are not smaller than q.
// CHECK:       module attributes {effc.move_matmul_scale = "1/2 matmul operand scales moved to the smaller operand; left: the other operand is not smaller (1)"}
// CHECK-LABEL: func.func @decode_scores(
// CHECK-SAME:    %[[Q:.*]]: !torch.vtensor<[2,1,4],f32>, %[[K:.*]]: !torch.vtensor<[2,6,4],f32>
// CHECK:         %[[C:.*]] = torch.constant.float 5.000000e-01
// CHECK:         %[[QS:.*]] = torch.aten.mul.Scalar %[[Q]], %[[C]]
// CHECK:         %[[KT:.*]] = torch.aten.permute %[[K]]
// CHECK:         %[[KV:.*]] = torch.aten.view %[[KT]]
// CHECK-NEXT:    %[[QSS:.*]] = torch.aten.mul.Scalar %[[QS]], %[[C]] : !torch.vtensor<[2,1,4],f32>, !torch.float -> !torch.vtensor<[2,1,4],f32>
// CHECK-NEXT:    %[[S:.*]] = torch.aten.bmm %[[QSS]], %[[KV]]
// CHECK-NOT:     torch.aten.mul.Scalar
// CHECK:         return %[[S]]
func.func @decode_scores(%q: !torch.vtensor<[2,1,4],f32>, %k: !torch.vtensor<[2,6,4],f32>) -> !torch.vtensor<[2,1,6],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int4 = torch.constant.int 4
  %int6 = torch.constant.int 6
  %c = torch.constant.float 5.000000e-01
  %qs = torch.aten.mul.Scalar %q, %c : !torch.vtensor<[2,1,4],f32>, !torch.float -> !torch.vtensor<[2,1,4],f32>
  %dims = torch.prim.ListConstruct %int0, %int2, %int1 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %kt = torch.aten.permute %k, %dims : !torch.vtensor<[2,6,4],f32>, !torch.list<int> -> !torch.vtensor<[2,4,6],f32>
  %ks = torch.aten.mul.Scalar %kt, %c : !torch.vtensor<[2,4,6],f32>, !torch.float -> !torch.vtensor<[2,4,6],f32>
  %shape = torch.prim.ListConstruct %int2, %int4, %int6 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %kv = torch.aten.view %ks, %shape : !torch.vtensor<[2,4,6],f32>, !torch.list<int> -> !torch.vtensor<[2,4,6],f32>
  %s = torch.aten.bmm %qs, %kv : !torch.vtensor<[2,1,4],f32>, !torch.vtensor<[2,4,6],f32> -> !torch.vtensor<[2,1,6],f32>
  return %s : !torch.vtensor<[2,1,6],f32>
}

// -----

// Prefill-sized attention: q and k are the same size, so both scales stay (moving one would save nothing).
// CHECK:       module attributes {effc.move_matmul_scale = "0/2 matmul operand scales moved to the smaller operand; left: the other operand is not smaller (2)"}
// CHECK-LABEL: func.func @prefill_scores(
// CHECK:         torch.aten.mul.Scalar
// CHECK:         torch.aten.mul.Scalar
// CHECK:         torch.aten.bmm
func.func @prefill_scores(%q: !torch.vtensor<[2,6,4],f32>, %kt: !torch.vtensor<[2,4,6],f32>) -> !torch.vtensor<[2,6,6],f32> {
  %c = torch.constant.float 5.000000e-01
  %qs = torch.aten.mul.Scalar %q, %c : !torch.vtensor<[2,6,4],f32>, !torch.float -> !torch.vtensor<[2,6,4],f32>
  %ks = torch.aten.mul.Scalar %kt, %c : !torch.vtensor<[2,4,6],f32>, !torch.float -> !torch.vtensor<[2,4,6],f32>
  %s = torch.aten.bmm %qs, %ks : !torch.vtensor<[2,6,4],f32>, !torch.vtensor<[2,4,6],f32> -> !torch.vtensor<[2,6,6],f32>
  return %s : !torch.vtensor<[2,6,6],f32>
}

// -----

// A scaled tensor that something else also reads keeps its scale (it would still be computed): not a site. Nor is
// a scale by a value that is not a constant.
// CHECK:       module attributes {effc.move_matmul_scale = "0/0 matmul operand scales moved to the smaller operand"}
// CHECK-LABEL: func.func @shared_or_dynamic(
// CHECK-COUNT-2: torch.aten.mul.Scalar
func.func @shared_or_dynamic(%q: !torch.vtensor<[1,1,4],f32>, %kt: !torch.vtensor<[1,4,6],f32>, %f: !torch.float) -> (!torch.vtensor<[1,1,6],f32>, !torch.vtensor<[1,4,6],f32>, !torch.vtensor<[1,1,6],f32>) {
  %c = torch.constant.float 5.000000e-01
  %ks = torch.aten.mul.Scalar %kt, %c : !torch.vtensor<[1,4,6],f32>, !torch.float -> !torch.vtensor<[1,4,6],f32>
  %s = torch.aten.bmm %q, %ks : !torch.vtensor<[1,1,4],f32>, !torch.vtensor<[1,4,6],f32> -> !torch.vtensor<[1,1,6],f32>
  %kd = torch.aten.mul.Scalar %kt, %f : !torch.vtensor<[1,4,6],f32>, !torch.float -> !torch.vtensor<[1,4,6],f32>
  %t = torch.aten.bmm %q, %kd : !torch.vtensor<[1,1,4],f32>, !torch.vtensor<[1,4,6],f32> -> !torch.vtensor<[1,1,6],f32>
  return %s, %ks, %t : !torch.vtensor<[1,1,6],f32>, !torch.vtensor<[1,4,6],f32>, !torch.vtensor<[1,1,6],f32>
}
