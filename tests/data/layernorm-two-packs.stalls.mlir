hal.executable public @main$async_dispatch_16 {
  hal.executable.variant public @embedded_elf_x86_64 target(<"llvm-cpu", "embedded-elf-x86_64", {cpu = "znver4", cpu_features = "+adx,+aes,+avx,+avx2,+avx512bf16,+avx512bitalg,+avx512bw,+avx512cd,+avx512dq,+avx512f,+avx512ifma,+avx512vbmi,+avx512vbmi2,+avx512vl,+avx512vnni,+avx512vpopcntdq,+bmi,+bmi2,+clflushopt,+clwb,+clzero,+crc32,+cx16,+cx8,+f16c,+fma,+fsgsbase,+fxsr,+gfni,+invpcid,+lzcnt,+mmx,+movbe,+mwaitx,+pclmul,+pku,+popcnt,+prfchw,+rdpid,+rdpru,+rdrnd,+rdseed,+sahf,+sha,+shstk,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+sse4a,+ssse3,+vaes,+vpclmulqdq,+wbnoinvd,+x87,+xsave,+xsavec,+xsaveopt,+xsaves,+64bit,+adx,+aes,-amx-avx512,-amx-bf16,-amx-complex,-amx-fp16,-amx-fp8,-amx-int8,-amx-movrs,-amx-tile,+avx,-avx10.1,-avx10.2,-avx10v2aux,+avx2,+avx512bf16,+avx512bitalg,-avx512bmm,+avx512bw,+avx512cd,+avx512dq,+avx512f,-avx512fp16,+avx512ifma,+avx512vbmi,+avx512vbmi2,+avx512vl,+avx512vnni,-avx512vp2intersect,+avx512vpopcntdq,-avxifma,-avxneconvert,-avxvnni,-avxvnniint16,-avxvnniint8,+bmi,+bmi2,-ccmp,-cf,-cldemote,+clflushopt,+clwb,+clzero,+cmov,-cmpccxadd,+crc32,+cx16,+cx8,-egpr,-enqcmd,+f16c,+fma,-fma4,+fsgsbase,+fxsr,+gfni,-hreset,+invpcid,-jmpabs,-kl,-lwp,+lzcnt,+mmx,+movbe,-movdir64b,-movdiri,-movrs,-mwaitx,-ndd,-nf,+pclmul,-pconfig,-pku,+popcnt,-ppx,-prefetchi,+prfchw,-ptwrite,-push2pop2,-raoint,+rdpid,-rdpru,+rdrnd,+rdseed,-rtm,+sahf,-serialize,-sgx,+sha,-sha512,+shstk,-sm3,-sm4,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+sse4a,+ssse3,-tbm,-tsxldtrk,-uintr,-usermsr,+vaes,+vpclmulqdq,-waitpkg,-wbnoinvd,-widekl,-xop,+xsave,+xsavec,+xsaveopt,+xsaves,-zu", data_layout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-i128:128-f80:128-n8:16:32:64-S128", iree.encoding.resolver = #iree_cpu.cpu_encoding_resolver<>, max_stack_allocation_size = 131072 : i64, native_vector_size = 64 : i64, target_triple = "x86_64-unknown-unknown-eabi-elf", ukernels = "all"}>) {
    hal.executable.export public @main$async_dispatch_16_reduction_128x384_f32 ordinal(0) layout(#hal.pipeline.layout<constants = 4, bindings = [#hal.pipeline.binding<storage_buffer, "ReadOnly|Indirect">, #hal.pipeline.binding<storage_buffer, ReadOnly>, #hal.pipeline.binding<storage_buffer, Indirect>, #hal.pipeline.binding<storage_buffer, Indirect>], flags = Indirect>) count(%arg0: !hal.device) -> (index, index, index) {
      %x, %y, %z = iree_tensor_ext.dispatch.workgroup_count_from_slice()
      hal.return %x, %y, %z : index, index, index
    }
    builtin.module {
      func.func @main$async_dispatch_16_reduction_128x384_f32() attributes {translation_info = #iree_codegen.translation_info<pipeline = #iree_cpu.pipeline<DoubleTilingExpert>>} {
        %cst = arith.constant 9.99999996E-13 : f32
        %cst_0 = arith.constant 3.840000e+02 : f32
        %cst_1 = arith.constant 0.000000e+00 : f32
        %c0 = arith.constant 0 : index
        %0 = hal.interface.constant.load layout(<constants = 4, bindings = [#hal.pipeline.binding<storage_buffer, "ReadOnly|Indirect">, #hal.pipeline.binding<storage_buffer, ReadOnly>, #hal.pipeline.binding<storage_buffer, Indirect>, #hal.pipeline.binding<storage_buffer, Indirect>], flags = Indirect>) ordinal(0) : i32
        %1 = hal.interface.constant.load layout(<constants = 4, bindings = [#hal.pipeline.binding<storage_buffer, "ReadOnly|Indirect">, #hal.pipeline.binding<storage_buffer, ReadOnly>, #hal.pipeline.binding<storage_buffer, Indirect>, #hal.pipeline.binding<storage_buffer, Indirect>], flags = Indirect>) ordinal(1) : i32
        %2 = hal.interface.constant.load layout(<constants = 4, bindings = [#hal.pipeline.binding<storage_buffer, "ReadOnly|Indirect">, #hal.pipeline.binding<storage_buffer, ReadOnly>, #hal.pipeline.binding<storage_buffer, Indirect>, #hal.pipeline.binding<storage_buffer, Indirect>], flags = Indirect>) ordinal(2) : i32
        %3 = hal.interface.constant.load layout(<constants = 4, bindings = [#hal.pipeline.binding<storage_buffer, "ReadOnly|Indirect">, #hal.pipeline.binding<storage_buffer, ReadOnly>, #hal.pipeline.binding<storage_buffer, Indirect>, #hal.pipeline.binding<storage_buffer, Indirect>], flags = Indirect>) ordinal(3) : i32
        %4 = arith.index_castui %0 : i32 to index
        %5 = arith.index_castui %1 : i32 to index
        %6 = arith.index_castui %2 : i32 to index
        %7 = arith.index_castui %3 : i32 to index
        %8:4 = util.assume.int 
            %4[<umin = 360704, umax = 360704, udiv = 360704>, <umin = 360704, umax = 360704, udiv = 360704>, <umin = 360704, umax = 360704, udiv = 360704>, <umin = 360704, umax = 360704, udiv = 360704>, <umin = 360704, umax = 360704, udiv = 360704>, <umin = 196608, umax = 196608, udiv = 196608>], 
            %5[<umin = 47281152, umax = 47281152, udiv = 47281152>, <umin = 47290368, umax = 47290368, udiv = 47290368>, <umin = 47299584, umax = 47299584, udiv = 47299584>, <umin = 47308800, umax = 47308800, udiv = 47308800>, <umin = 47318016, umax = 47318016, udiv = 47318016>, <umin = 47327232, umax = 47327232, udiv = 47327232>], 
            %6[<umin = 47282688, umax = 47282688, udiv = 47282688>, <umin = 47291904, umax = 47291904, udiv = 47291904>, <umin = 47301120, umax = 47301120, udiv = 47301120>, <umin = 47310336, umax = 47310336, udiv = 47310336>, <umin = 47319552, umax = 47319552, udiv = 47319552>, <umin = 47328768, umax = 47328768, udiv = 47328768>], 
            %7[<umin = 98432, umax = 98432, udiv = 98432>, <umin = 98432, umax = 98432, udiv = 98432>, <umin = 98432, umax = 98432, udiv = 98432>, <umin = 98432, umax = 98432, udiv = 98432>, <umin = 98432, umax = 98432, udiv = 98432>, <umin = 393216, umax = 393216, udiv = 393216>]
          : index, index, index, index
        %9 = hal.interface.binding.subspan layout(<constants = 4, bindings = [#hal.pipeline.binding<storage_buffer, "ReadOnly|Indirect">, #hal.pipeline.binding<storage_buffer, ReadOnly>, #hal.pipeline.binding<storage_buffer, Indirect>, #hal.pipeline.binding<storage_buffer, Indirect>], flags = Indirect>) binding(0) alignment(64) offset(%8#0) flags("ReadOnly|Indirect") : memref<128x384xf32, strided<[384, 1], offset: ?>, #hal.descriptor_type<storage_buffer>>
        %10 = hal.interface.binding.subspan layout(<constants = 4, bindings = [#hal.pipeline.binding<storage_buffer, "ReadOnly|Indirect">, #hal.pipeline.binding<storage_buffer, ReadOnly>, #hal.pipeline.binding<storage_buffer, Indirect>, #hal.pipeline.binding<storage_buffer, Indirect>], flags = Indirect>) binding(1) alignment(64) offset(%8#1) flags(ReadOnly) : memref<384xf32, strided<[1], offset: ?>, #hal.descriptor_type<storage_buffer>>
        %11 = hal.interface.binding.subspan layout(<constants = 4, bindings = [#hal.pipeline.binding<storage_buffer, "ReadOnly|Indirect">, #hal.pipeline.binding<storage_buffer, ReadOnly>, #hal.pipeline.binding<storage_buffer, Indirect>, #hal.pipeline.binding<storage_buffer, Indirect>], flags = Indirect>) binding(1) alignment(64) offset(%8#2) flags(ReadOnly) : memref<384xf32, strided<[1], offset: ?>, #hal.descriptor_type<storage_buffer>>
        %12 = hal.interface.binding.subspan layout(<constants = 4, bindings = [#hal.pipeline.binding<storage_buffer, "ReadOnly|Indirect">, #hal.pipeline.binding<storage_buffer, ReadOnly>, #hal.pipeline.binding<storage_buffer, Indirect>, #hal.pipeline.binding<storage_buffer, Indirect>], flags = Indirect>) binding(2) alignment(64) offset(%c0) flags(Indirect) : memref<8x192x16x2xbf16, #hal.descriptor_type<storage_buffer>>
        %13 = hal.interface.binding.subspan layout(<constants = 4, bindings = [#hal.pipeline.binding<storage_buffer, "ReadOnly|Indirect">, #hal.pipeline.binding<storage_buffer, ReadOnly>, #hal.pipeline.binding<storage_buffer, Indirect>, #hal.pipeline.binding<storage_buffer, Indirect>], flags = Indirect>) binding(3) alignment(64) offset(%8#3) flags(Indirect) : memref<8x24x16x16xf32, strided<[6144, 256, 16, 1], offset: ?>, #hal.descriptor_type<storage_buffer>>
        %14 = iree_codegen.load_from_buffer %9 : memref<128x384xf32, strided<[384, 1], offset: ?>, #hal.descriptor_type<storage_buffer>> -> tensor<128x384xf32>
        %15 = iree_codegen.load_from_buffer %10 : memref<384xf32, strided<[1], offset: ?>, #hal.descriptor_type<storage_buffer>> -> tensor<384xf32>
        %16 = iree_codegen.load_from_buffer %11 : memref<384xf32, strided<[1], offset: ?>, #hal.descriptor_type<storage_buffer>> -> tensor<384xf32>
        %17 = tensor.empty() : tensor<128x384xbf16>
        %18 = tensor.empty() : tensor<128x384xf32>
        %19 = tensor.empty() : tensor<128xf32>
        %20 = linalg.fill {lowering_config = #iree_cpu.lowering_config<vector_common_parallel = [16]>} ins(%cst_1 : f32) outs(%19 : tensor<128xf32>) -> tensor<128xf32>
        %21 = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%14 : tensor<128x384xf32>) outs(%20 : tensor<128xf32>) attrs =  {lowering_config = #iree_cpu.lowering_config<distribution = [16, 0], vector_common_parallel = [16, 0], vector_reduction = [0, 16]>} {
        ^bb0(%in: f32, %out: f32):
          %25 = arith.mulf %in, %in : f32
          %26 = arith.addf %25, %out : f32
          linalg.yield %26 : f32
        } -> tensor<128xf32>
        %22:2 = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%14, %21, %15, %16 : tensor<128x384xf32>, tensor<128xf32>, tensor<384xf32>, tensor<384xf32>) outs(%18, %17 : tensor<128x384xf32>, tensor<128x384xbf16>) attrs =  {lowering_config = #iree_cpu.lowering_config<vector_common_parallel = [16, 0], vector_inner_parallel = [0, 256]>} {
        ^bb0(%in: f32, %in_3: f32, %in_4: f32, %in_5: f32, %out: f32, %out_6: bf16):
          %25 = arith.divf %in_3, %cst_0 : f32
          %26 = arith.addf %25, %cst : f32
          %27 = math.rsqrt %26 : f32
          %28 = arith.mulf %in, %27 : f32
          %29 = arith.mulf %28, %in_4 : f32
          %30 = arith.addf %29, %in_5 : f32
          %31 = arith.truncf %30 : f32 to bf16
          linalg.yield %30, %31 : f32, bf16
        } -> (tensor<128x384xf32>, tensor<128x384xbf16>)
        %23 = tensor.empty() : tensor<8x192x16x2xbf16>
        %pack = linalg.pack %22#1 outer_dims_perm = [0, 1] inner_dims_pos = [0, 1] inner_tiles = [16, 2] into %23 {lowering_config = #iree_cpu.lowering_config<vector_common_parallel = [1, 0], vector_inner_parallel = [0, 128]>} : tensor<128x384xbf16> -> tensor<8x192x16x2xbf16>
        %24 = tensor.empty() : tensor<8x24x16x16xf32>
        %pack_2 = linalg.pack %22#0 outer_dims_perm = [0, 1] inner_dims_pos = [0, 1] inner_tiles = [16, 16] into %24 {lowering_config = #iree_cpu.lowering_config<vector_common_parallel = [1, 0], vector_inner_parallel = [0, 16]>} : tensor<128x384xf32> -> tensor<8x24x16x16xf32>
        iree_codegen.store_to_buffer %pack, %12 : tensor<8x192x16x2xbf16> into memref<8x192x16x2xbf16, #hal.descriptor_type<storage_buffer>>
        iree_codegen.store_to_buffer %pack_2, %13 : tensor<8x24x16x16xf32> into memref<8x24x16x16xf32, strided<[6144, 256, 16, 1], offset: ?>, #hal.descriptor_type<storage_buffer>>
        return
      }
      iree_codegen.dispatch_config @main$async_dispatch_16_reduction_128x384_f32 {
      ^bb0(%arg0: !hal.device):
        %x, %y, %z = iree_tensor_ext.dispatch.workgroup_count_from_slice()
        iree_codegen.yield %x, %y, %z : index, index, index
      }
    }
  }
}
