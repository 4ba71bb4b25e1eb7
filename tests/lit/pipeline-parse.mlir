// Valid pipelines: nesting, options, whitespace, effc passes hoisted out of func.func, and the
// PassManager's own view of the pipeline (--dump-pass-pipeline, printed to stderr like mlir-opt).

// No pipeline: parse and print.
// RUN: effc-opt %s | FileCheck %s --check-prefix=ROUNDTRIP
// ROUNDTRIP-LABEL: func.func @twice
// ROUNDTRIP-COUNT-2: arith.addi
// ROUNDTRIP: arith.muli

// Nested anchor and upstream options; whitespace around elements is allowed, as in mlir-opt.
// RUN: effc-opt %s --pass-pipeline='builtin.module(func.func(cse),canonicalize{max-iterations=3})' \
// RUN:   | FileCheck %s --check-prefix=CSE
// RUN: effc-opt %s -p ' builtin.module( func.func( cse ) , canonicalize ) ' | FileCheck %s --check-prefix=CSE
// CSE-LABEL: func.func @twice
// CSE-NEXT:    %[[SUM:.*]] = arith.addi %arg0, %arg0 : i32
// CSE-NEXT:    %[[PRODUCT:.*]] = arith.muli %[[SUM]], %[[SUM]] : i32
// CSE-NEXT:    return %[[PRODUCT]] : i32

// RUN: effc-opt %s --pass-pipeline='builtin.module(func.func(cse),canonicalize{max-iterations=3 top-down=false})' \
// RUN:   --dump-pass-pipeline -o /dev/null 2>&1 | FileCheck %s --check-prefix=DUMP
// DUMP: builtin.module(func.func(cse),canonicalize{{.*}} max-iterations=3 {{.*}} top-down=false})

// IR printing goes to stderr: after-change dumps only the passes that changed something (cse on @twice).
// RUN: effc-opt %s --pass-pipeline='builtin.module(func.func(cse),canonicalize)' --mlir-print-ir-after-change \
// RUN:   -o /dev/null 2>&1 | FileCheck %s --check-prefix=CHANGE
// CHANGE:      // -----// IR Dump After CSEPass: cse //----- //
// CHANGE-NEXT: func.func @twice(
// CHANGE-NOT:  IR Dump After
// RUN: effc-opt %s --pass-pipeline='builtin.module(func.func(cse),canonicalize)' --mlir-print-ir-after-all \
// RUN:   -o /dev/null 2>&1 | FileCheck %s --check-prefix=ALL
// ALL-COUNT-2: IR Dump After CSEPass: cse
// ALL:         IR Dump After CanonicalizerPass: canonicalize{

// An empty pipeline is valid.
// RUN: effc-opt %s --pass-pipeline='builtin.module()' --dump-pass-pipeline -o /dev/null 2>&1 \
// RUN:   | FileCheck %s --check-prefix=EMPTY
// EMPTY: {{^builtin.module\(\)$}}

// effc-lower-to-linalg stands for torch-mlir's lowering pipeline; its option reaches the upstream passes.
// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-lower-to-linalg{allow-non-finites=false})' \
// RUN:   --dump-pass-pipeline -o /dev/null 2>&1 | FileCheck %s --check-prefix=LOWER-DUMP
// LOWER-DUMP: func.func(convert-torch-to-linalg{allow-non-finites=false})
// LOWER-DUMP-SAME: torch-verify-linalg-on-tensors-backend-contract

// An effc pass written inside func.func(...) runs at module level between the two halves of the
// func.func run (the bindings abort on nested Python passes).
// RUN: effc-opt %s --pass-pipeline='builtin.module(func.func(cse,effc-lower-to-linalg,canonicalize))' \
// RUN:   --dump-pass-pipeline 2>&1 | FileCheck %s --check-prefix=HOIST
// HOIST: {{^builtin.module\(func.func\(cse\),func.func\(torch-decompose-complex-ops\{\}\),func.func\(torch-restructure-non-constant-axes\)}}
// HOIST-SAME: torch-verify-linalg-on-tensors-backend-contract,func.func(canonicalize{{.*}}))
// HOIST-LABEL: func.func @relu(%arg0: tensor<2x3xf32>) -> tensor<2x3xf32>
// HOIST: linalg.generic
// HOIST: arith.cmpf ugt

// One pipeline, three stages: effc-profile (a Python pass) annotates the torch-level IR,
// effc-lower-to-linalg lowers it, and canonicalize then runs on linalg-on-tensors. The Python pass's
// options round-trip through the PassManager's own printing.
// RUN: effc-opt %s --pass-pipeline='builtin.module(effc-profile{target=h100-sxm tf32},effc-lower-to-linalg,canonicalize)' \
// RUN:   --dump-pass-pipeline 2>&1 | FileCheck %s --check-prefix=STAGES
// STAGES: {{^builtin.module\(effc-profile\{target=h100-sxm tf32=true\},func.func\(torch-decompose-complex-ops\{\}\),func.func\(torch-restructure-non-constant-axes\)}}
// STAGES-SAME: torch-verify-linalg-on-tensors-backend-contract,canonicalize{{.*}})
// STAGES: module attributes {{.*}}effc.profile.class_share
// STAGES-LABEL: func.func @relu(%arg0: tensor<2x3xf32>) -> tensor<2x3xf32>
// STAGES: linalg.generic

func.func @twice(%a: i32) -> i32 {
  %0 = arith.addi %a, %a : i32
  %1 = arith.addi %a, %a : i32
  %2 = arith.muli %0, %1 : i32
  return %2 : i32
}

func.func @relu(%arg0: !torch.vtensor<[2,3],f32>) -> !torch.vtensor<[2,3],f32> {
  %0 = torch.aten.relu %arg0 : !torch.vtensor<[2,3],f32> -> !torch.vtensor<[2,3],f32>
  return %0 : !torch.vtensor<[2,3],f32>
}
