// effc-hopper-kernels: f16/bf16 linears by constant weights and unmasked attention become calls of effc's Triton
// kernels for Hopper, declared with each kernel's specialization in `effc.hopper_kernel` (define_kernels turns them
// into IREE custom dispatches when the module goes to iree-compile). The attention reads q, k and v where the fused
// QKV projection wrote them (an offset and batch, head and row strides into its [M, 3·H·D] output) and writes
// heads-last, so the model's transpose back disappears. Left, by reason in the module attributes: masked attention,
// shapes that are not multiples of the kernels' tiles, weights that are not constants.

// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-hopper-kernels)' | FileCheck %s
// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-hopper-kernels{attention=false stages=2 image=ptx})' | FileCheck %s --check-prefix=LINEAR

// CHECK: module attributes {effc.hopper_attention = "1/2 attentions as effc's Hopper attention kernel; left: a mask, dropout or causal attention (1)", effc.hopper_linear = "2/5 matmuls as effc's Hopper linear kernel; left: shape not a multiple of the kernel's tiles (128x128, K 64) (1), weight not a transposed constant (2)"}
// LINEAR: module attributes {effc.hopper_linear = "2/5 matmuls
// LINEAR-NOT: effc.hopper_attention

// A block of one sequence of 128 tokens, 2 heads of 64: QKV projection, attention, output projection.
// CHECK-LABEL: func.func @block(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[1,128,128],f16>
// CHECK:         %[[WQKV:.*]] = torch.vtensor.literal({{.*}}) : !torch.vtensor<[384,128],f16>
// CHECK:         %[[BQKV:.*]] = torch.vtensor.literal({{.*}}) : !torch.vtensor<[384],f16>
// CHECK:         %[[X2:.*]] = torch.aten.view %[[X]]
// CHECK-NOT:     torch.aten.mm
// CHECK:         %[[QKV:.*]] = call @effc_hopper_linear_0(%[[X2]], %[[WQKV]], %[[BQKV]]) : (!torch.vtensor<[128,128],f16>, !torch.vtensor<[384,128],f16>, !torch.vtensor<[384],f16>) -> !torch.vtensor<[128,384],f16>
// CHECK-NOT:     torch.aten.scaled_dot_product_attention
// CHECK:         %[[O:.*]] = call @effc_hopper_attention_0(%[[QKV]], %[[QKV]], %[[QKV]]) : {{.*}} -> !torch.vtensor<[1,128,2,64],f16>
// CHECK-NOT:     torch.aten.permute
// CHECK:         %[[O2:.*]] = torch.aten.view %[[O]]
// CHECK:         %[[O3:.*]] = torch.aten.view %[[O2]]
// CHECK:         %[[Y:.*]] = call @effc_hopper_linear_1(%[[O3]], {{.*}}) : (!torch.vtensor<[128,128],f16>, !torch.vtensor<[128,128],f16>, !torch.vtensor<[128],f16>) -> !torch.vtensor<[128,128],f16>
// LINEAR-LABEL: func.func @block(
// LINEAR:         call @effc_hopper_linear_0
// LINEAR:         torch.aten.scaled_dot_product_attention
// LINEAR:         call @effc_hopper_linear_1
func.func @block(%x: !torch.vtensor<[1,128,128],f16>) -> !torch.vtensor<[1,128,128],f16> {
  %false = torch.constant.bool false
  %none = torch.constant.none
  %float0 = torch.constant.float 0.000000e+00
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %int64 = torch.constant.int 64
  %int128 = torch.constant.int 128
  %int384 = torch.constant.int 384
  %wo = torch.vtensor.literal(dense<1.000000e-02> : tensor<128x128xf16>) : !torch.vtensor<[128,128],f16>
  %bo = torch.vtensor.literal(dense<0.000000e+00> : tensor<128xf16>) : !torch.vtensor<[128],f16>
  %w = torch.vtensor.literal(dense<1.000000e-02> : tensor<384x128xf16>) : !torch.vtensor<[384,128],f16>
  %b = torch.vtensor.literal(dense<0.000000e+00> : tensor<384xf16>) : !torch.vtensor<[384],f16>
  %rows = torch.prim.ListConstruct %int128, %int128 : (!torch.int, !torch.int) -> !torch.list<int>
  %x2 = torch.aten.view %x, %rows : !torch.vtensor<[1,128,128],f16>, !torch.list<int> -> !torch.vtensor<[128,128],f16>
  %t = torch.prim.ListConstruct %int1, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %wt = torch.aten.permute %w, %t : !torch.vtensor<[384,128],f16>, !torch.list<int> -> !torch.vtensor<[128,384],f16>
  %b32 = torch.aten.to.dtype %b, %int6, %false, %false, %none : !torch.vtensor<[384],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[384],f32>
  %x32 = torch.aten.to.dtype %x2, %int6, %false, %false, %none : !torch.vtensor<[128,128],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[128,128],f32>
  %wt32 = torch.aten.to.dtype %wt, %int6, %false, %false, %none : !torch.vtensor<[128,384],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[128,384],f32>
  %mm = torch.aten.mm %x32, %wt32 : !torch.vtensor<[128,128],f32>, !torch.vtensor<[128,384],f32> -> !torch.vtensor<[128,384],f32>
  %mm1 = torch.aten.mul.Scalar %mm, %int1 : !torch.vtensor<[128,384],f32>, !torch.int -> !torch.vtensor<[128,384],f32>
  %b1 = torch.aten.mul.Scalar %b32, %int1 : !torch.vtensor<[384],f32>, !torch.int -> !torch.vtensor<[384],f32>
  %add = torch.aten.add.Tensor %mm1, %b1, %int1 : !torch.vtensor<[128,384],f32>, !torch.vtensor<[384],f32>, !torch.int -> !torch.vtensor<[128,384],f32>
  %qkv = torch.aten.to.dtype %add, %int5, %false, %false, %none : !torch.vtensor<[128,384],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[128,384],f16>
  %s5 = torch.prim.ListConstruct %int1, %int128, %int3, %int2, %int64 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %qkv5 = torch.aten.view %qkv, %s5 : !torch.vtensor<[128,384],f16>, !torch.list<int> -> !torch.vtensor<[1,128,3,2,64],f16>
  %p5 = torch.prim.ListConstruct %int2, %int0, %int3, %int1, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %heads = torch.aten.permute %qkv5, %p5 : !torch.vtensor<[1,128,3,2,64],f16>, !torch.list<int> -> !torch.vtensor<[3,1,2,128,64],f16>
  %qs = torch.aten.slice.Tensor %heads, %int0, %int0, %int1, %int1 : !torch.vtensor<[3,1,2,128,64],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,1,2,128,64],f16>
  %ks = torch.aten.slice.Tensor %heads, %int0, %int1, %int2, %int1 : !torch.vtensor<[3,1,2,128,64],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,1,2,128,64],f16>
  %vs = torch.aten.slice.Tensor %heads, %int0, %int2, %int3, %int1 : !torch.vtensor<[3,1,2,128,64],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,1,2,128,64],f16>
  %q = torch.aten.squeeze.dim %qs, %int0 : !torch.vtensor<[1,1,2,128,64],f16>, !torch.int -> !torch.vtensor<[1,2,128,64],f16>
  %k = torch.aten.squeeze.dim %ks, %int0 : !torch.vtensor<[1,1,2,128,64],f16>, !torch.int -> !torch.vtensor<[1,2,128,64],f16>
  %v = torch.aten.squeeze.dim %vs, %int0 : !torch.vtensor<[1,1,2,128,64],f16>, !torch.int -> !torch.vtensor<[1,2,128,64],f16>
  %att = torch.aten.scaled_dot_product_attention %q, %k, %v, %none, %float0, %false, %none, %false : !torch.vtensor<[1,2,128,64],f16>, !torch.vtensor<[1,2,128,64],f16>, !torch.vtensor<[1,2,128,64],f16>, !torch.none, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,2,128,64],f16>
  %p4 = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %back = torch.aten.permute %att, %p4 : !torch.vtensor<[1,2,128,64],f16>, !torch.list<int> -> !torch.vtensor<[1,128,2,64],f16>
  %s3 = torch.prim.ListConstruct %int1, %int128, %int128 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %o3 = torch.aten.view %back, %s3 : !torch.vtensor<[1,128,2,64],f16>, !torch.list<int> -> !torch.vtensor<[1,128,128],f16>
  %o2 = torch.aten.view %o3, %rows : !torch.vtensor<[1,128,128],f16>, !torch.list<int> -> !torch.vtensor<[128,128],f16>
  %wot = torch.aten.permute %wo, %t : !torch.vtensor<[128,128],f16>, !torch.list<int> -> !torch.vtensor<[128,128],f16>
  %bo32 = torch.aten.to.dtype %bo, %int6, %false, %false, %none : !torch.vtensor<[128],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[128],f32>
  %o32 = torch.aten.to.dtype %o2, %int6, %false, %false, %none : !torch.vtensor<[128,128],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[128,128],f32>
  %wot32 = torch.aten.to.dtype %wot, %int6, %false, %false, %none : !torch.vtensor<[128,128],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[128,128],f32>
  %mmo = torch.aten.mm %o32, %wot32 : !torch.vtensor<[128,128],f32>, !torch.vtensor<[128,128],f32> -> !torch.vtensor<[128,128],f32>
  %mmo1 = torch.aten.mul.Scalar %mmo, %int1 : !torch.vtensor<[128,128],f32>, !torch.int -> !torch.vtensor<[128,128],f32>
  %bo1 = torch.aten.mul.Scalar %bo32, %int1 : !torch.vtensor<[128],f32>, !torch.int -> !torch.vtensor<[128],f32>
  %addo = torch.aten.add.Tensor %mmo1, %bo1, %int1 : !torch.vtensor<[128,128],f32>, !torch.vtensor<[128],f32>, !torch.int -> !torch.vtensor<[128,128],f32>
  %y2 = torch.aten.to.dtype %addo, %int5, %false, %false, %none : !torch.vtensor<[128,128],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[128,128],f16>
  %y = torch.aten.view %y2, %s3 : !torch.vtensor<[128,128],f16>, !torch.list<int> -> !torch.vtensor<[1,128,128],f16>
  return %y : !torch.vtensor<[1,128,128],f16>
}

// Left: a masked attention; a linear of 100 rows; a matmul by an activation (no constant weight), whose product,
// without bias and rounding, would have gone out in f32; a constant whose permute keeps its axes (a [K, N] weight).
// CHECK-LABEL: func.func @left(
// CHECK:         torch.aten.scaled_dot_product_attention
// CHECK:         torch.aten.mm
// CHECK:         torch.aten.mm
// CHECK:         torch.aten.mm
func.func @left(%q: !torch.vtensor<[1,2,128,64],f16>, %mask: !torch.vtensor<[1,1,128,128],i1>, %x: !torch.vtensor<[100,128],f16>, %a: !torch.vtensor<[128,128],f16>) -> (!torch.vtensor<[1,2,128,64],f16>, !torch.vtensor<[100,128],f32>, !torch.vtensor<[128,128],f32>) {
  %false = torch.constant.bool false
  %none = torch.constant.none
  %float0 = torch.constant.float 0.000000e+00
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int6 = torch.constant.int 6
  %att = torch.aten.scaled_dot_product_attention %q, %q, %q, %mask, %float0, %false, %none, %false : !torch.vtensor<[1,2,128,64],f16>, !torch.vtensor<[1,2,128,64],f16>, !torch.vtensor<[1,2,128,64],f16>, !torch.vtensor<[1,1,128,128],i1>, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,2,128,64],f16>
  %w = torch.vtensor.literal(dense<1.000000e-02> : tensor<128x128xf16>) : !torch.vtensor<[128,128],f16>
  %t = torch.prim.ListConstruct %int1, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %wt = torch.aten.permute %w, %t : !torch.vtensor<[128,128],f16>, !torch.list<int> -> !torch.vtensor<[128,128],f16>
  %wt32 = torch.aten.to.dtype %wt, %int6, %false, %false, %none : !torch.vtensor<[128,128],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[128,128],f32>
  %x32 = torch.aten.to.dtype %x, %int6, %false, %false, %none : !torch.vtensor<[100,128],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[100,128],f32>
  %short = torch.aten.mm %x32, %wt32 : !torch.vtensor<[100,128],f32>, !torch.vtensor<[128,128],f32> -> !torch.vtensor<[100,128],f32>
  %at = torch.aten.permute %a, %t : !torch.vtensor<[128,128],f16>, !torch.list<int> -> !torch.vtensor<[128,128],f16>
  %a32 = torch.aten.to.dtype %a, %int6, %false, %false, %none : !torch.vtensor<[128,128],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[128,128],f32>
  %at32 = torch.aten.to.dtype %at, %int6, %false, %false, %none : !torch.vtensor<[128,128],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[128,128],f32>
  %aa = torch.aten.mm %a32, %at32 : !torch.vtensor<[128,128],f32>, !torch.vtensor<[128,128],f32> -> !torch.vtensor<[128,128],f32>
  %same = torch.prim.ListConstruct %int0, %int1 : (!torch.int, !torch.int) -> !torch.list<int>
  %wk = torch.aten.permute %w, %same : !torch.vtensor<[128,128],f16>, !torch.list<int> -> !torch.vtensor<[128,128],f16>
  %wk32 = torch.aten.to.dtype %wk, %int6, %false, %false, %none : !torch.vtensor<[128,128],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[128,128],f32>
  %a2 = torch.aten.to.dtype %a, %int6, %false, %false, %none : !torch.vtensor<[128,128],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[128,128],f32>
  %kn = torch.aten.mm %a2, %wk32 : !torch.vtensor<[128,128],f32>, !torch.vtensor<[128,128],f32> -> !torch.vtensor<[128,128],f32>
  %sum = torch.aten.add.Tensor %aa, %kn, %int1 : !torch.vtensor<[128,128],f32>, !torch.vtensor<[128,128],f32>, !torch.int -> !torch.vtensor<[128,128],f32>
  return %att, %short, %sum : !torch.vtensor<[1,2,128,64],f16>, !torch.vtensor<[100,128],f32>, !torch.vtensor<[128,128],f32>
}

// The declarations carry the kernels' specializations: the QKV projection's 1x3 tiles of 128x128 with its bias, and
// the attention's q, k and v at column offsets 0, 128 and 256 of the projection's rows (384 apart), heads 64 apart.
// CHECK:       func.func private @effc_hopper_linear_0(!torch.vtensor<[128,128],f16>, !torch.vtensor<[384,128],f16>, !torch.vtensor<[384],f16>) -> !torch.vtensor<[128,384],f16> attributes {effc.hopper_kernel = "effc_linear ptrs=x:*fp16,w:*fp16,bias:*fp16,y:*fp16 grid=3x1x1 warps=8 stages=4 image=cubin M=128 N=384 K=128 HAS_BIAS=True BM=128 BN=128 BK=64 GROUP=8"}
// CHECK:       func.func private @effc_hopper_attention_0({{.*}}) -> !torch.vtensor<[1,128,2,64],f16> attributes {effc.hopper_kernel = "effc_attention ptrs=q:*fp16,k:*fp16,v:*fp16,o:*fp16 grid=1x2x1 warps=8 stages=3 image=cubin Q_AT=0 Q_B=0 Q_H=64 Q_T=384 K_AT=128 K_B=0 K_H=64 K_T=384 V_AT=256 V_B=0 V_H=64 V_T=384 O_B=16384 O_H=64 O_T=128 HEADS=2 QUERIES=128 KEYS=128 D=64 SCALE_LOG2=0.18033688011112042 BM=128 BN=64"}
// LINEAR:      func.func private @effc_hopper_linear_0({{.*}}) -> {{.*}} attributes {effc.hopper_kernel = "effc_linear ptrs=x:*fp16,w:*fp16,bias:*fp16,y:*fp16 grid=3x1x1 warps=8 stages=2 image=ptx
