// effc-read-taps appends each layer's output to @main's results. Layers are the repeated block of ops
// whose importer call-stack locations (file:line frames) match; here two "layers" run layer.py lines
// 5-7 under the model.py:30 call, and a mask computed once inside layer 1 (CSE'd across layers) is
// shared by both. Weights and constants have no operands and are ignored.

// RUN: effc-opt %s --split-input-file --verify-diagnostics \
// RUN:   --pass-pipeline='builtin.module(effc-read-taps{expect-layers=2})' | FileCheck %s

// CHECK-LABEL: func.func @main(
// CHECK-SAME:    -> (!torch.vtensor<[2,4],f32>, !torch.vtensor<[2,4],f32>, !torch.vtensor<[2,4],f32>)
// CHECK:         %[[EMB:.*]] = torch.aten.neg %arg0
// CHECK:         %[[MASK:.*]] = torch.aten.sigmoid %arg0
// CHECK:         %[[MUL1:.*]] = torch.aten.mul.Tensor %[[EMB]], %[[MASK]]
// CHECK:         %[[ADD1:.*]] = torch.aten.add.Tensor %[[MUL1]], %[[EMB]]
// CHECK:         %[[OUT1:.*]] = torch.aten.tanh %[[ADD1]]
// CHECK:         %[[MUL2:.*]] = torch.aten.mul.Tensor %[[OUT1]], %[[MASK]]
// CHECK:         %[[ADD2:.*]] = torch.aten.add.Tensor %[[MUL2]], %[[OUT1]]
// CHECK:         %[[OUT2:.*]] = torch.aten.tanh %[[ADD2]]
// CHECK:         %[[HEAD:.*]] = torch.aten.neg %[[OUT2]]
// CHECK:         return %[[HEAD]], %[[OUT1]], %[[OUT2]] :

// Asking for another layer count fails at the function, naming what was found.
// RUN: not effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-read-taps{expect-layers=3})' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=COUNT
// COUNT: effc-read-taps.mlir:42:1: error: effc-read-taps: found 2 repeated layers in @main, expected 3

#model = loc("model.py":20:0)
#layer_call = loc("model.py":30:0)
#layers = loc(callsite(#layer_call at #model))
#emb = loc(callsite("model.py":25:0 at #model))
#mask = loc(callsite("layer.py":4:0 at #layers))
#mul = loc(callsite("layer.py":5:0 at #layers))
#add = loc(callsite("layer.py":6:0 at #layers))
#act = loc(callsite("layer.py":7:0 at #layers))
#head = loc(callsite("model.py":40:0 at #model))

// A function other than @main is left alone.
func.func @helper(%x: !torch.vtensor<[2,4],f32>) -> !torch.vtensor<[2,4],f32> {
  return %x : !torch.vtensor<[2,4],f32>
}

func.func @main(%x: !torch.vtensor<[2,4],f32>) -> !torch.vtensor<[2,4],f32> {
  %int1 = torch.constant.int 1
  %e = torch.aten.neg %x : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32> loc(#emb)
  %m = torch.aten.sigmoid %x : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32> loc(#mask)
  %0 = torch.aten.mul.Tensor %e, %m : !torch.vtensor<[2,4],f32>, !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32> loc(#mul)
  %1 = torch.aten.add.Tensor %0, %e, %int1 : !torch.vtensor<[2,4],f32>, !torch.vtensor<[2,4],f32>, !torch.int -> !torch.vtensor<[2,4],f32> loc(#add)
  %2 = torch.aten.tanh %1 : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32> loc(#act)
  %3 = torch.aten.mul.Tensor %2, %m : !torch.vtensor<[2,4],f32>, !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32> loc(#mul)
  %4 = torch.aten.add.Tensor %3, %2, %int1 : !torch.vtensor<[2,4],f32>, !torch.vtensor<[2,4],f32>, !torch.int -> !torch.vtensor<[2,4],f32> loc(#add)
  %5 = torch.aten.tanh %4 : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32> loc(#act)
  %6 = torch.aten.neg %5 : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32> loc(#head)
  return %6 : !torch.vtensor<[2,4],f32>
}

// -----

// Without the importer's locations every op has its own file position: there is nothing to match.
// expected-error @below {{effc-read-taps: no repeated layer block in @main}}
func.func @main(%x: !torch.vtensor<[2,4],f32>) -> !torch.vtensor<[2,4],f32> {
  %0 = torch.aten.tanh %x : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32>
  %1 = torch.aten.tanh %0 : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32>
  return %1 : !torch.vtensor<[2,4],f32>
}
