func.func @mlp(%x: !torch.vtensor<[3,8],f32>) -> !torch.vtensor<[3,8],f32> {
  %0 = torch.aten.relu %x : !torch.vtensor<[3,8],f32> -> !torch.vtensor<[3,8],f32>
  return %0 : !torch.vtensor<[3,8],f32>
}
