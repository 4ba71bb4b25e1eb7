// Input for split-and-verify.mlir: the first chunk lacks an annotation, the second expects an
// error that never comes. Line and column numbers of this file are checked there.
func.func @unannotated(%arg0: !torch.vtensor<[2,3],f32>) -> !torch.vtensor<[2,3],f32> {
  %0 = torch.operator "torch.aten.frobnicate"(%arg0) : (!torch.vtensor<[2,3],f32>) -> !torch.vtensor<[2,3],f32>
  return %0 : !torch.vtensor<[2,3],f32>
}

// -----

// expected-error @below {{this message never appears}}
func.func @fine(%a: i32) -> i32 {
  return %a : i32
}
