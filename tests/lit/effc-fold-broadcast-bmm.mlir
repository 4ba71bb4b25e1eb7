// effc-fold-broadcast-bmm: a bmm whose second operand repeats each batch entry r times (a broadcast merged into
// the batch axis, LLaMA's repeat_kv) becomes a bmm over the distinct entries with r times the first operand's rows,
// so the repeats are never copied. Which entries repeat is computed by replaying the layout ops from the broadcast.
// Left, by reason in the module attribute effc.fold_broadcast_bmm: a repeated first operand, first operands of more
// than 16 rows, broadcasts that repeat no whole batch entry, and repeats whose distinct entries are no permutation
// of the broadcast's input.

// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-fold-broadcast-bmm)' | FileCheck %s

// CHECK: module attributes {effc.fold_broadcast_bmm = "3/7 batch matmuls over repeated entries folded onto the distinct ones; left: first operand of more than 16 rows: the repeats are small beside the matmul (1), no batch entry repeated (1), repeated entries that are not the broadcast's input reordered (1), the first operand repeated (1)"}

// The weighted values of a decode step over 2 KV heads repeated for 4 query heads: p's 4 heads become 2 KV heads
// of 2 rows, multiplied by the cache as it is.
// CHECK-LABEL: func.func @values(
// CHECK-SAME:    %[[P:[^:]+]]: !torch.vtensor<[4,1,6],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,6,8],f32>
// CHECK-NOT:     torch.aten.broadcast_to
// CHECK:         %[[VU:.*]] = torch.aten.unsqueeze %[[V]]
// CHECK:         %[[VB:.*]] = torch.aten.view %[[VU]], %{{.*}} : !torch.vtensor<[1,2,1,6,8],f32>, !torch.list<int> -> !torch.vtensor<[2,6,8],f32>
// CHECK-NOT:     torch.aten.permute
// CHECK:         %[[PS:.*]] = torch.aten.view %[[P]], %{{.*}} -> !torch.vtensor<[2,2,6],f32>
// CHECK:         %[[O:.*]] = torch.aten.bmm %[[PS]], %[[VB]] : {{.*}} -> !torch.vtensor<[2,2,8],f32>
// CHECK:         %[[R:.*]] = torch.aten.view %[[O]], %{{.*}} -> !torch.vtensor<[4,1,8],f32>
// CHECK:         return %[[R]]
func.func @values(%p: !torch.vtensor<[4,1,6],f32>, %v: !torch.vtensor<[1,2,6,8],f32>) -> !torch.vtensor<[4,1,8],f32> {
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int4 = torch.constant.int 4
  %int6 = torch.constant.int 6
  %int8 = torch.constant.int 8
  %up = torch.aten.unsqueeze %v, %int2 : !torch.vtensor<[1,2,6,8],f32>, !torch.int -> !torch.vtensor<[1,2,1,6,8],f32>
  %sizes = torch.prim.ListConstruct %int1, %int2, %int2, %int6, %int8 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %rep = torch.aten.broadcast_to %up, %sizes : !torch.vtensor<[1,2,1,6,8],f32>, !torch.list<int> -> !torch.vtensor<[1,2,2,6,8],f32>
  %heads = torch.prim.ListConstruct %int4, %int6, %int8 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %b = torch.aten.view %rep, %heads : !torch.vtensor<[1,2,2,6,8],f32>, !torch.list<int> -> !torch.vtensor<[4,6,8],f32>
  %o = torch.aten.bmm %p, %b : !torch.vtensor<[4,1,6],f32>, !torch.vtensor<[4,6,8],f32> -> !torch.vtensor<[4,1,8],f32>
  return %o : !torch.vtensor<[4,1,8],f32>
}

// f16 values cast to f32 after the repeat (torch's decomposition of f16 attention): the cast comes after the fold,
// on the distinct entries only.
// CHECK-LABEL: func.func @values_f16(
// CHECK-SAME:    %[[P:[^:]+]]: !torch.vtensor<[4,1,6],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,6,8],f16>
// CHECK:         %[[VB:.*]] = torch.aten.view %{{.*}} -> !torch.vtensor<[2,6,8],f16>
// CHECK:         %[[VC:.*]] = torch.aten.to.dtype %[[VB]], {{.*}} -> !torch.vtensor<[2,6,8],f32>
// CHECK:         %[[PS:.*]] = torch.aten.view %[[P]], %{{.*}} -> !torch.vtensor<[2,2,6],f32>
// CHECK:         torch.aten.bmm %[[PS]], %[[VC]] : {{.*}} -> !torch.vtensor<[2,2,8],f32>
func.func @values_f16(%p: !torch.vtensor<[4,1,6],f32>, %v: !torch.vtensor<[1,2,6,8],f16>) -> !torch.vtensor<[4,1,8],f32> {
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int4 = torch.constant.int 4
  %int6 = torch.constant.int 6
  %int8 = torch.constant.int 8
  %f32 = torch.constant.int 6
  %false = torch.constant.bool false
  %none = torch.constant.none
  %up = torch.aten.unsqueeze %v, %int2 : !torch.vtensor<[1,2,6,8],f16>, !torch.int -> !torch.vtensor<[1,2,1,6,8],f16>
  %sizes = torch.prim.ListConstruct %int1, %int2, %int2, %int6, %int8 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %rep = torch.aten.broadcast_to %up, %sizes : !torch.vtensor<[1,2,1,6,8],f16>, !torch.list<int> -> !torch.vtensor<[1,2,2,6,8],f16>
  %heads = torch.prim.ListConstruct %int4, %int6, %int8 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %b16 = torch.aten.view %rep, %heads : !torch.vtensor<[1,2,2,6,8],f16>, !torch.list<int> -> !torch.vtensor<[4,6,8],f16>
  %b = torch.aten.to.dtype %b16, %f32, %false, %false, %none : !torch.vtensor<[4,6,8],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[4,6,8],f32>
  %o = torch.aten.bmm %p, %b : !torch.vtensor<[4,1,6],f32>, !torch.vtensor<[4,6,8],f32> -> !torch.vtensor<[4,1,8],f32>
  return %o : !torch.vtensor<[4,1,8],f32>
}

// The scores: the repeated keys transposed after the repeat; the distinct entries are the cache permuted.
// CHECK-LABEL: func.func @scores(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[6,1,8],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,5,8],f32>
// CHECK-NOT:     torch.aten.broadcast_to
// CHECK:         %[[KU:.*]] = torch.aten.unsqueeze %[[K]]
// CHECK:         %[[KD:.*]] = torch.aten.view %[[KU]], %{{.*}} -> !torch.vtensor<[2,5,8],f32>
// CHECK:         %[[KB:.*]] = torch.aten.permute %[[KD]], %{{.*}} -> !torch.vtensor<[2,8,5],f32>
// CHECK-NOT:     torch.aten.view %[[KB]]
// CHECK:         %[[QS:.*]] = torch.aten.view %[[Q]], %{{.*}} -> !torch.vtensor<[2,3,8],f32>
// CHECK:         %[[S:.*]] = torch.aten.bmm %[[QS]], %[[KB]] : {{.*}} -> !torch.vtensor<[2,3,5],f32>
// CHECK:         %[[R:.*]] = torch.aten.view %[[S]], %{{.*}} -> !torch.vtensor<[6,1,5],f32>
// CHECK:         return %[[R]]
func.func @scores(%q: !torch.vtensor<[6,1,8],f32>, %k: !torch.vtensor<[1,2,5,8],f32>) -> !torch.vtensor<[6,1,5],f32> {
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %int8 = torch.constant.int 8
  %up = torch.aten.unsqueeze %k, %int2 : !torch.vtensor<[1,2,5,8],f32>, !torch.int -> !torch.vtensor<[1,2,1,5,8],f32>
  %sizes = torch.prim.ListConstruct %int1, %int2, %int3, %int5, %int8 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %false = torch.constant.bool false
  %rep = torch.aten.expand %up, %sizes, %false : !torch.vtensor<[1,2,1,5,8],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,2,3,5,8],f32>
  %heads = torch.prim.ListConstruct %int1, %int6, %int5, %int8 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %merged = torch.aten.view %rep, %heads : !torch.vtensor<[1,2,3,5,8],f32>, !torch.list<int> -> !torch.vtensor<[1,6,5,8],f32>
  %kt = torch.aten.transpose.int %merged, %int2, %int3 : !torch.vtensor<[1,6,5,8],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,6,8,5],f32>
  %shape = torch.prim.ListConstruct %int6, %int8, %int5 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %b = torch.aten.view %kt, %shape : !torch.vtensor<[1,6,8,5],f32>, !torch.list<int> -> !torch.vtensor<[6,8,5],f32>
  %s = torch.aten.bmm %q, %b : !torch.vtensor<[6,1,8],f32>, !torch.vtensor<[6,8,5],f32> -> !torch.vtensor<[6,1,5],f32>
  return %s : !torch.vtensor<[6,1,5],f32>
}

// Left: the repeated operand first; 32 rows of the first operand (a prompt: the repeats are small beside the
// matmul); a broadcast along k, which repeats no batch entry; and repeats whose distinct entries interleave the
// halves of the input's last axis (a view splits it, a permute swaps the halves' axes: no permutation of the input).
// CHECK-LABEL: func.func @left(
// CHECK-COUNT-4: torch.aten.bmm
// CHECK-NOT:     torch.aten.bmm
func.func @left(%x: !torch.vtensor<[2,1,4],f32>, %w: !torch.vtensor<[4,4,3],f32>, %a32: !torch.vtensor<[4,32,4],f32>, %row: !torch.vtensor<[4,1,3],f32>, %a: !torch.vtensor<[4,1,2],f32>) -> (!torch.vtensor<[4,2,3],f32>, !torch.vtensor<[4,32,2],f32>, !torch.vtensor<[4,1,3],f32>, !torch.vtensor<[4,1,2],f32>) {
  %int2 = torch.constant.int 2
  %int4 = torch.constant.int 4
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int3 = torch.constant.int 3
  %sizes = torch.prim.ListConstruct %int2, %int2, %int4 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %rep = torch.aten.broadcast_to %x, %sizes : !torch.vtensor<[2,1,4],f32>, !torch.list<int> -> !torch.vtensor<[2,2,4],f32>
  %shape = torch.prim.ListConstruct %int4, %int2, %int2 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %firsts = torch.aten.view %rep, %shape : !torch.vtensor<[2,2,4],f32>, !torch.list<int> -> !torch.vtensor<[4,2,2],f32>
  %wsub = torch.aten.slice.Tensor %w, %int1, %int0, %int2, %int1 : !torch.vtensor<[4,4,3],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[4,2,3],f32>
  %first = torch.aten.bmm %firsts, %wsub : !torch.vtensor<[4,2,2],f32>, !torch.vtensor<[4,2,3],f32> -> !torch.vtensor<[4,2,3],f32>
  %seconds = torch.aten.view %rep, %shape : !torch.vtensor<[2,2,4],f32>, !torch.list<int> -> !torch.vtensor<[4,2,2],f32>
  %wide = torch.prim.ListConstruct %int4, %int4, %int2 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %tall = torch.aten.view %seconds, %wide : !torch.vtensor<[4,2,2],f32>, !torch.list<int> -> !torch.vtensor<[4,4,1],f32>
  %columns = torch.prim.ListConstruct %int4, %int4, %int2 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %tall2 = torch.aten.broadcast_to %tall, %columns : !torch.vtensor<[4,4,1],f32>, !torch.list<int> -> !torch.vtensor<[4,4,2],f32>
  %many = torch.aten.bmm %a32, %tall2 : !torch.vtensor<[4,32,4],f32>, !torch.vtensor<[4,4,2],f32> -> !torch.vtensor<[4,32,2],f32>
  %ksizes = torch.prim.ListConstruct %int4, %int3, %int3 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %along_k = torch.aten.broadcast_to %row, %ksizes : !torch.vtensor<[4,1,3],f32>, !torch.list<int> -> !torch.vtensor<[4,3,3],f32>
  %a3 = torch.aten.slice.Tensor %a32, %int1, %int0, %int1, %int1 : !torch.vtensor<[4,32,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[4,1,4],f32>
  %a33 = torch.aten.slice.Tensor %a3, %int2, %int0, %int3, %int1 : !torch.vtensor<[4,1,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[4,1,3],f32>
  %k = torch.aten.bmm %a33, %along_k : !torch.vtensor<[4,1,3],f32>, !torch.vtensor<[4,3,3],f32> -> !torch.vtensor<[4,1,3],f32>
  %split = torch.prim.ListConstruct %int2, %int2, %int2, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %halves = torch.aten.view %rep, %split : !torch.vtensor<[2,2,4],f32>, !torch.list<int> -> !torch.vtensor<[2,2,2,2],f32>
  %order = torch.prim.ListConstruct %int0, %int1, %int3, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %swapped = torch.aten.permute %halves, %order : !torch.vtensor<[2,2,2,2],f32>, !torch.list<int> -> !torch.vtensor<[2,2,2,2],f32>
  %mixed = torch.aten.view %swapped, %shape : !torch.vtensor<[2,2,2,2],f32>, !torch.list<int> -> !torch.vtensor<[4,2,2],f32>
  %m = torch.aten.bmm %a, %mixed : !torch.vtensor<[4,1,2],f32>, !torch.vtensor<[4,2,2],f32> -> !torch.vtensor<[4,1,2],f32>
  return %first, %many, %k, %m : !torch.vtensor<[4,2,3],f32>, !torch.vtensor<[4,32,2],f32>, !torch.vtensor<[4,1,3],f32>, !torch.vtensor<[4,1,2],f32>
}
