// effc-split-concat-matmul: a matmul whose operand is a concatenation (through views, permutes, squeezes,
// unsqueezes, broadcasts, casts and constant padding) becomes matmuls of the parts, so the concatenation is never
// copied: a decode step's cat([KV cache, new row]) per layer. Along the operand's outer axis (m of the first, n of
// the second) the products are concatenated; along k the other operand is sliced to each part and the products
// summed. Left, by reason in the module attribute effc.split_concat_matmul: concatenations read elsewhere too, along
// the batch axis, whose axis a view merges with another or a broadcast repeats, padded by a negative amount, or
// against more than 16 rows (columns) of the other operand.

// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-split-concat-matmul)' | FileCheck %s

// CHECK: module attributes {effc.split_concat_matmul = "6/12 matmuls of a concatenation split into matmuls of its parts; left: a broadcast along the concatenated axis (1), a view merges the concatenated axis with another (1), concatenated along the batch axis (1), concatenation read elsewhere too (1), other operand of more than 16 rows (columns): the copy is cheap beside the matmul (1), padding that is not constant, or negative (1)"}

// Decode attention's scores: q by the transposed cat([cache, new row]) along the keys, n of the second operand.
// The cache's keys and the new row each permuted and viewed as the concatenation was; the scores concatenated.
// CHECK-LABEL: func.func @scores(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[3,1,8],f32>, %[[CACHE:[^:]+]]: !torch.vtensor<[1,3,16,8],f32>, %[[NEW:[^:]+]]: !torch.vtensor<[1,3,1,8],f32>
// CHECK-NOT:     torch.aten.cat {{.*}} -> !torch.vtensor<[1,3,17,8],f32>
// CHECK:         %[[CT:.*]] = torch.aten.permute %[[CACHE]], %{{.*}} -> !torch.vtensor<[1,3,8,16],f32>
// CHECK:         %[[CB:.*]] = torch.aten.view %[[CT]], %{{.*}} -> !torch.vtensor<[3,8,16],f32>
// CHECK:         %[[NT:.*]] = torch.aten.permute %[[NEW]], %{{.*}} -> !torch.vtensor<[1,3,8,1],f32>
// CHECK:         %[[NB:.*]] = torch.aten.view %[[NT]], %{{.*}} -> !torch.vtensor<[3,8,1],f32>
// CHECK:         %[[S1:.*]] = torch.aten.bmm %[[Q]], %[[CB]] : {{.*}} -> !torch.vtensor<[3,1,16],f32>
// CHECK:         %[[S2:.*]] = torch.aten.bmm %[[Q]], %[[NB]] : {{.*}} -> !torch.vtensor<[3,1,1],f32>
// CHECK:         %[[L:.*]] = torch.prim.ListConstruct %[[S1]], %[[S2]]
// CHECK:         %[[TWO:.*]] = torch.constant.int 2
// CHECK:         %[[S:.*]] = torch.aten.cat %[[L]], %[[TWO]] : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[3,1,17],f32>
// CHECK:         return %[[S]]
func.func @scores(%q: !torch.vtensor<[3,1,8],f32>, %cache: !torch.vtensor<[1,3,16,8],f32>, %new: !torch.vtensor<[1,3,1,8],f32>) -> !torch.vtensor<[3,1,17],f32> {
  %int2 = torch.constant.int 2
  %parts = torch.prim.ListConstruct %cache, %new : (!torch.vtensor<[1,3,16,8],f32>, !torch.vtensor<[1,3,1,8],f32>) -> !torch.list<vtensor>
  %keys = torch.aten.cat %parts, %int2 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[1,3,17,8],f32>
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int3 = torch.constant.int 3
  %order = torch.prim.ListConstruct %int0, %int1, %int3, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %kt = torch.aten.permute %keys, %order : !torch.vtensor<[1,3,17,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,8,17],f32>
  %int8 = torch.constant.int 8
  %int17 = torch.constant.int 17
  %shape = torch.prim.ListConstruct %int3, %int8, %int17 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %b = torch.aten.view %kt, %shape : !torch.vtensor<[1,3,8,17],f32>, !torch.list<int> -> !torch.vtensor<[3,8,17],f32>
  %s = torch.aten.bmm %q, %b : !torch.vtensor<[3,1,8],f32>, !torch.vtensor<[3,8,17],f32> -> !torch.vtensor<[3,1,17],f32>
  return %s : !torch.vtensor<[3,1,17],f32>
}

// The weighted values: p by cat([cache, new row]) along k of the second operand.
// The weights p sliced at the cache's 16 rows; the two products summed.
// CHECK-LABEL: func.func @values(
// CHECK-SAME:    %[[P:[^:]+]]: !torch.vtensor<[3,1,17],f32>
// CHECK-NOT:     torch.aten.cat
// CHECK:         %[[CB:.*]] = torch.aten.view %{{.*}} -> !torch.vtensor<[3,16,8],f32>
// CHECK:         %[[NB:.*]] = torch.aten.view %{{.*}} -> !torch.vtensor<[3,1,8],f32>
// CHECK:         %[[P1:.*]] = torch.aten.slice.Tensor %[[P]], %{{.*}} -> !torch.vtensor<[3,1,16],f32>
// CHECK:         %[[O1:.*]] = torch.aten.bmm %[[P1]], %[[CB]]
// CHECK:         %[[P2:.*]] = torch.aten.slice.Tensor %[[P]], %{{.*}} -> !torch.vtensor<[3,1,1],f32>
// CHECK:         %[[O2:.*]] = torch.aten.bmm %[[P2]], %[[NB]]
// CHECK:         %[[O:.*]] = torch.aten.add.Tensor %[[O1]], %[[O2]], %{{.*}} -> !torch.vtensor<[3,1,8],f32>
// CHECK:         return %[[O]]
func.func @values(%p: !torch.vtensor<[3,1,17],f32>, %cache: !torch.vtensor<[1,3,16,8],f32>, %new: !torch.vtensor<[1,3,1,8],f32>) -> !torch.vtensor<[3,1,8],f32> {
  %int2 = torch.constant.int 2
  %parts = torch.prim.ListConstruct %cache, %new : (!torch.vtensor<[1,3,16,8],f32>, !torch.vtensor<[1,3,1,8],f32>) -> !torch.list<vtensor>
  %vals = torch.aten.cat %parts, %int2 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[1,3,17,8],f32>
  %up = torch.aten.unsqueeze %vals, %int2 : !torch.vtensor<[1,3,17,8],f32>, !torch.int -> !torch.vtensor<[1,3,1,17,8],f32>
  %down = torch.aten.squeeze.dim %up, %int2 : !torch.vtensor<[1,3,1,17,8],f32>, !torch.int -> !torch.vtensor<[1,3,17,8],f32>
  %int3 = torch.constant.int 3
  %int8 = torch.constant.int 8
  %int17 = torch.constant.int 17
  %shape = torch.prim.ListConstruct %int3, %int17, %int8 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %b = torch.aten.view %down, %shape : !torch.vtensor<[1,3,17,8],f32>, !torch.list<int> -> !torch.vtensor<[3,17,8],f32>
  %o = torch.aten.bmm %p, %b : !torch.vtensor<[3,1,17],f32>, !torch.vtensor<[3,17,8],f32> -> !torch.vtensor<[3,1,8],f32>
  return %o : !torch.vtensor<[3,1,8],f32>
}

// The weighted values over repeated KV heads with the keys padded (repeat_kv, then key_multiple's constant_pad_nd):
// each part repeated as the concatenation was; only the last part padded, by all of the padding.
// CHECK-LABEL: func.func @repeated_padded_values(
// CHECK-SAME:    %[[P:[^:]+]]: !torch.vtensor<[4,1,8],f32>, %[[CACHE:[^:]+]]: !torch.vtensor<[1,2,6,4],f32>, %[[NEW:[^:]+]]: !torch.vtensor<[1,2,1,4],f32>
// CHECK-NOT:     torch.aten.cat
// CHECK:         %[[CU:.*]] = torch.aten.unsqueeze %[[CACHE]], %{{.*}} -> !torch.vtensor<[1,2,1,6,4],f32>
// CHECK:         %[[CR:.*]] = torch.aten.broadcast_to %[[CU]], %{{.*}} -> !torch.vtensor<[1,2,2,6,4],f32>
// CHECK:         %[[CV:.*]] = torch.aten.view %[[CR]], %{{.*}} -> !torch.vtensor<[1,4,6,4],f32>
// CHECK-NOT:     torch.aten.constant_pad_nd %[[CV]]
// CHECK:         %[[CB:.*]] = torch.aten.view %[[CV]], %{{.*}} -> !torch.vtensor<[4,6,4],f32>
// CHECK:         %[[NU:.*]] = torch.aten.unsqueeze %[[NEW]], %{{.*}} -> !torch.vtensor<[1,2,1,1,4],f32>
// CHECK:         %[[NR:.*]] = torch.aten.broadcast_to %[[NU]], %{{.*}} -> !torch.vtensor<[1,2,2,1,4],f32>
// CHECK:         %[[NV:.*]] = torch.aten.view %[[NR]], %{{.*}} -> !torch.vtensor<[1,4,1,4],f32>
// CHECK:         %[[ZERO:.*]] = torch.constant.int 0
// CHECK:         %[[PADS:.*]] = torch.prim.ListConstruct %[[ZERO]], %[[ZERO]], %[[ZERO]], %int1, %[[ZERO]], %[[ZERO]], %[[ZERO]], %[[ZERO]] :
// CHECK:         %[[NP:.*]] = torch.aten.constant_pad_nd %[[NV]], %[[PADS]], %{{.*}} -> !torch.vtensor<[1,4,2,4],f32>
// CHECK:         %[[NB:.*]] = torch.aten.view %[[NP]], %{{.*}} -> !torch.vtensor<[4,2,4],f32>
// CHECK:         %[[P1:.*]] = torch.aten.slice.Tensor %[[P]], %{{.*}} -> !torch.vtensor<[4,1,6],f32>
// CHECK:         %[[O1:.*]] = torch.aten.bmm %[[P1]], %[[CB]]
// CHECK:         %[[P2:.*]] = torch.aten.slice.Tensor %[[P]], %{{.*}} -> !torch.vtensor<[4,1,2],f32>
// CHECK:         %[[O2:.*]] = torch.aten.bmm %[[P2]], %[[NB]]
// CHECK:         %[[O:.*]] = torch.aten.add.Tensor %[[O1]], %[[O2]], %{{.*}} -> !torch.vtensor<[4,1,4],f32>
// CHECK:         return %[[O]]
func.func @repeated_padded_values(%p: !torch.vtensor<[4,1,8],f32>, %cache: !torch.vtensor<[1,2,6,4],f32>, %new: !torch.vtensor<[1,2,1,4],f32>) -> !torch.vtensor<[4,1,4],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int4 = torch.constant.int 4
  %int7 = torch.constant.int 7
  %int8 = torch.constant.int 8
  %parts = torch.prim.ListConstruct %cache, %new : (!torch.vtensor<[1,2,6,4],f32>, !torch.vtensor<[1,2,1,4],f32>) -> !torch.list<vtensor>
  %vals = torch.aten.cat %parts, %int2 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[1,2,7,4],f32>
  %up = torch.aten.unsqueeze %vals, %int2 : !torch.vtensor<[1,2,7,4],f32>, !torch.int -> !torch.vtensor<[1,2,1,7,4],f32>
  %sizes = torch.prim.ListConstruct %int1, %int2, %int2, %int7, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %rep = torch.aten.broadcast_to %up, %sizes : !torch.vtensor<[1,2,1,7,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,2,7,4],f32>
  %heads = torch.prim.ListConstruct %int1, %int4, %int7, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %merged = torch.aten.view %rep, %heads : !torch.vtensor<[1,2,2,7,4],f32>, !torch.list<int> -> !torch.vtensor<[1,4,7,4],f32>
  %pads = torch.prim.ListConstruct %int0, %int0, %int0, %int1 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %zero = torch.constant.float 0.000000e+00
  %padded = torch.aten.constant_pad_nd %merged, %pads, %zero : !torch.vtensor<[1,4,7,4],f32>, !torch.list<int>, !torch.float -> !torch.vtensor<[1,4,8,4],f32>
  %shape = torch.prim.ListConstruct %int4, %int8, %int4 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %b = torch.aten.view %padded, %shape : !torch.vtensor<[1,4,8,4],f32>, !torch.list<int> -> !torch.vtensor<[4,8,4],f32>
  %o = torch.aten.bmm %p, %b : !torch.vtensor<[4,1,8],f32>, !torch.vtensor<[4,8,4],f32> -> !torch.vtensor<[4,1,4],f32>
  return %o : !torch.vtensor<[4,1,4],f32>
}

// An f16 cache cast to f32 after the concatenation (torch's decomposition of f16 attention): each part cast.
// CHECK-LABEL: func.func @values_f16(
// CHECK-SAME:    %[[P:[^:]+]]: !torch.vtensor<[3,1,17],f32>, %[[CACHE:[^:]+]]: !torch.vtensor<[1,3,16,8],f16>, %[[NEW:[^:]+]]: !torch.vtensor<[1,3,1,8],f16>
// CHECK-NOT:     torch.aten.cat
// CHECK:         %[[CC:.*]] = torch.aten.to.dtype %[[CACHE]], {{.*}} -> !torch.vtensor<[1,3,16,8],f32>
// CHECK:         %[[CB:.*]] = torch.aten.view %[[CC]], %{{.*}} -> !torch.vtensor<[3,16,8],f32>
// CHECK:         %[[NC:.*]] = torch.aten.to.dtype %[[NEW]], {{.*}} -> !torch.vtensor<[1,3,1,8],f32>
// CHECK:         %[[NB:.*]] = torch.aten.view %[[NC]], %{{.*}} -> !torch.vtensor<[3,1,8],f32>
// CHECK:         torch.aten.bmm %{{.*}}, %[[CB]]
// CHECK:         torch.aten.bmm %{{.*}}, %[[NB]]
func.func @values_f16(%p: !torch.vtensor<[3,1,17],f32>, %cache: !torch.vtensor<[1,3,16,8],f16>, %new: !torch.vtensor<[1,3,1,8],f16>) -> !torch.vtensor<[3,1,8],f32> {
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int6 = torch.constant.int 6
  %int8 = torch.constant.int 8
  %int17 = torch.constant.int 17
  %false = torch.constant.bool false
  %none = torch.constant.none
  %parts = torch.prim.ListConstruct %cache, %new : (!torch.vtensor<[1,3,16,8],f16>, !torch.vtensor<[1,3,1,8],f16>) -> !torch.list<vtensor>
  %vals = torch.aten.cat %parts, %int2 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[1,3,17,8],f16>
  %wide = torch.aten.to.dtype %vals, %int6, %false, %false, %none : !torch.vtensor<[1,3,17,8],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,3,17,8],f32>
  %shape = torch.prim.ListConstruct %int3, %int17, %int8 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %b = torch.aten.view %wide, %shape : !torch.vtensor<[1,3,17,8],f32>, !torch.list<int> -> !torch.vtensor<[3,17,8],f32>
  %o = torch.aten.bmm %p, %b : !torch.vtensor<[3,1,17],f32>, !torch.vtensor<[3,17,8],f32> -> !torch.vtensor<[3,1,8],f32>
  return %o : !torch.vtensor<[3,1,8],f32>
}

// Rows of the first operand (m): the products' rows concatenated; k of the first operand: the products summed.
// CHECK-LABEL: func.func @first_operand(
// CHECK-SAME:    %[[A:[^:]+]]: !torch.vtensor<[2,4],f32>, %[[B:[^:]+]]: !torch.vtensor<[3,4],f32>, %[[W:[^:]+]]: !torch.vtensor<[4,6],f32>, %[[C:[^:]+]]: !torch.vtensor<[5,1],f32>, %[[D:[^:]+]]: !torch.vtensor<[5,3],f32>
// CHECK:         %[[YA:.*]] = torch.aten.mm %[[A]], %[[W]] : {{.*}} -> !torch.vtensor<[2,6],f32>
// CHECK:         %[[YB:.*]] = torch.aten.mm %[[B]], %[[W]] : {{.*}} -> !torch.vtensor<[3,6],f32>
// CHECK:         %[[Y:.*]] = torch.aten.cat {{.*}} -> !torch.vtensor<[5,6],f32>
// CHECK:         %[[W1:.*]] = torch.aten.slice.Tensor %[[W]], {{.*}} -> !torch.vtensor<[1,6],f32>
// CHECK:         %[[UC:.*]] = torch.aten.mm %[[C]], %[[W1]]
// CHECK:         %[[W2:.*]] = torch.aten.slice.Tensor %[[W]], {{.*}} -> !torch.vtensor<[3,6],f32>
// CHECK:         %[[UD:.*]] = torch.aten.mm %[[D]], %[[W2]]
// CHECK:         %[[U:.*]] = torch.aten.add.Tensor %[[UC]], %[[UD]]
// CHECK:         return %[[Y]], %[[U]]
func.func @first_operand(%a: !torch.vtensor<[2,4],f32>, %b: !torch.vtensor<[3,4],f32>, %w: !torch.vtensor<[4,6],f32>, %c: !torch.vtensor<[5,1],f32>, %d: !torch.vtensor<[5,3],f32>) -> (!torch.vtensor<[5,6],f32>, !torch.vtensor<[5,6],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %rows = torch.prim.ListConstruct %a, %b : (!torch.vtensor<[2,4],f32>, !torch.vtensor<[3,4],f32>) -> !torch.list<vtensor>
  %x = torch.aten.cat %rows, %int0 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[5,4],f32>
  %y = torch.aten.mm %x, %w : !torch.vtensor<[5,4],f32>, !torch.vtensor<[4,6],f32> -> !torch.vtensor<[5,6],f32>
  %columns = torch.prim.ListConstruct %c, %d : (!torch.vtensor<[5,1],f32>, !torch.vtensor<[5,3],f32>) -> !torch.list<vtensor>
  %z = torch.aten.cat %columns, %int1 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[5,4],f32>
  %u = torch.aten.mm %z, %w : !torch.vtensor<[5,4],f32>, !torch.vtensor<[4,6],f32> -> !torch.vtensor<[5,6],f32>
  return %y, %u : !torch.vtensor<[5,6],f32>, !torch.vtensor<[5,6],f32>
}

// Left: a concatenation read elsewhere too (its copy stays), one along the batch axis, one whose axis a view merges,
// one against a first operand of 32 rows (a matmul bound by arithmetic, not by reading the concatenation), one
// repeated along its axis by a broadcast, and one cropped by negative padding.
// CHECK-LABEL: func.func @left(
// CHECK-COUNT-6: torch.aten.cat
// CHECK-NOT:     torch.aten.cat
// CHECK-NOT:     torch.aten.slice.Tensor
func.func @left(%a: !torch.vtensor<[2,4,4],f32>, %b: !torch.vtensor<[1,4,4],f32>, %w: !torch.vtensor<[3,4,4],f32>, %c: !torch.vtensor<[4,2],f32>, %d: !torch.vtensor<[4,2],f32>, %v: !torch.vtensor<[16,8],f32>, %x32: !torch.vtensor<[32,4],f32>, %b1: !torch.vtensor<[1,8],f32>, %b3: !torch.vtensor<[3,8],f32>, %w8: !torch.vtensor<[8,2],f32>) -> (!torch.vtensor<[3,4,4],f32>, !torch.vtensor<[3,4,4],f32>, !torch.vtensor<[1,8],f32>, !torch.vtensor<[32,8],f32>, !torch.vtensor<[3,2],f32>, !torch.vtensor<[3,2],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %batch = torch.prim.ListConstruct %a, %b : (!torch.vtensor<[2,4,4],f32>, !torch.vtensor<[1,4,4],f32>) -> !torch.list<vtensor>
  %x = torch.aten.cat %batch, %int0 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[3,4,4],f32>
  %y = torch.aten.bmm %x, %w : !torch.vtensor<[3,4,4],f32>, !torch.vtensor<[3,4,4],f32> -> !torch.vtensor<[3,4,4],f32>
  %shared = torch.prim.ListConstruct %a, %b : (!torch.vtensor<[2,4,4],f32>, !torch.vtensor<[1,4,4],f32>) -> !torch.list<vtensor>
  %twice = torch.aten.cat %shared, %int0 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[3,4,4],f32>
  %int2 = torch.constant.int 2
  %tt = torch.aten.transpose.int %twice, %int1, %int2 : !torch.vtensor<[3,4,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[3,4,4],f32>
  %z = torch.aten.bmm %w, %tt : !torch.vtensor<[3,4,4],f32>, !torch.vtensor<[3,4,4],f32> -> !torch.vtensor<[3,4,4],f32>
  %sum = torch.aten.add.Tensor %z, %twice, %int1 : !torch.vtensor<[3,4,4],f32>, !torch.vtensor<[3,4,4],f32>, !torch.int -> !torch.vtensor<[3,4,4],f32>
  %pair = torch.prim.ListConstruct %c, %d : (!torch.vtensor<[4,2],f32>, !torch.vtensor<[4,2],f32>) -> !torch.list<vtensor>
  %cd = torch.aten.cat %pair, %int1 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[4,4],f32>
  %int16 = torch.constant.int 16
  %flat = torch.prim.ListConstruct %int1, %int16 : (!torch.int, !torch.int) -> !torch.list<int>
  %row = torch.aten.view %cd, %flat : !torch.vtensor<[4,4],f32>, !torch.list<int> -> !torch.vtensor<[1,16],f32>
  %r = torch.aten.mm %row, %v : !torch.vtensor<[1,16],f32>, !torch.vtensor<[16,8],f32> -> !torch.vtensor<[1,8],f32>
  %ks = torch.prim.ListConstruct %b1, %b3 : (!torch.vtensor<[1,8],f32>, !torch.vtensor<[3,8],f32>) -> !torch.list<vtensor>
  %kb = torch.aten.cat %ks, %int0 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[4,8],f32>
  %many = torch.aten.mm %x32, %kb : !torch.vtensor<[32,4],f32>, !torch.vtensor<[4,8],f32> -> !torch.vtensor<[32,8],f32>
  %one = torch.prim.ListConstruct %b1 : (!torch.vtensor<[1,8],f32>) -> !torch.list<vtensor>
  %single = torch.aten.cat %one, %int0 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[1,8],f32>
  %int3 = torch.constant.int 3
  %int8 = torch.constant.int 8
  %three = torch.prim.ListConstruct %int3, %int8 : (!torch.int, !torch.int) -> !torch.list<int>
  %rows = torch.aten.broadcast_to %single, %three : !torch.vtensor<[1,8],f32>, !torch.list<int> -> !torch.vtensor<[3,8],f32>
  %repeated = torch.aten.mm %rows, %w8 : !torch.vtensor<[3,8],f32>, !torch.vtensor<[8,2],f32> -> !torch.vtensor<[3,2],f32>
  %odd = torch.prim.ListConstruct %b1, %b3 : (!torch.vtensor<[1,8],f32>, !torch.vtensor<[3,8],f32>) -> !torch.list<vtensor>
  %four = torch.aten.cat %odd, %int0 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[4,8],f32>
  %intm1 = torch.constant.int -1
  %crop = torch.prim.ListConstruct %int0, %int0, %int0, %intm1 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %zero = torch.constant.float 0.000000e+00
  %cropped = torch.aten.constant_pad_nd %four, %crop, %zero : !torch.vtensor<[4,8],f32>, !torch.list<int>, !torch.float -> !torch.vtensor<[3,8],f32>
  %first3 = torch.aten.mm %cropped, %w8 : !torch.vtensor<[3,8],f32>, !torch.vtensor<[8,2],f32> -> !torch.vtensor<[3,2],f32>
  return %y, %sum, %r, %many, %repeated, %first3 : !torch.vtensor<[3,4,4],f32>, !torch.vtensor<[3,4,4],f32>, !torch.vtensor<[1,8],f32>, !torch.vtensor<[32,8],f32>, !torch.vtensor<[3,2],f32>, !torch.vtensor<[3,2],f32>
}
