// --split-input-file: each `// -----` chunk is parsed and lowered on its own, outputs are joined with
// `// -----`, and diagnostics carry line numbers of this file. --verify-diagnostics checks them
// against the expected-* annotations instead of printing them.

// RUN: effc-opt %s --split-input-file --verify-diagnostics --pass-pipeline='builtin.module(effc-lower-to-linalg)' \
// RUN:   | FileCheck %s
// CHECK-LABEL: func.func @relu(%arg0: tensor<2x3xf32>) -> tensor<2x3xf32>
// CHECK:         linalg.generic
// CHECK-NOT:     func.func @unlowerable
// CHECK:       // -----
// CHECK-LABEL: func.func @neg(%arg0: tensor<4xf32>) -> tensor<4xf32>
// CHECK:         arith.negf
// CHECK-NOT:     // -----

// Without --verify-diagnostics the same input fails: the diagnostics are printed at this file's
// lines, the chunks that worked are still printed, and the exit code is 1.
// RUN: not effc-opt %s --split-input-file --pass-pipeline='builtin.module(effc-lower-to-linalg)' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=PLAIN
// PLAIN-DAG: split-and-verify.mlir:46:8: error: failed to legalize operation 'torch.operator'
// PLAIN-DAG: split-and-verify.mlir:56:3: error: redefinition of SSA value '%x'
// PLAIN-DAG: split-and-verify.mlir:54:3: note: previously defined here
// PLAIN-DAG: effc: error: 2 of 4 chunks of {{.*}}split-and-verify.mlir failed (diagnostics above)
// PLAIN-DAG: func.func @relu
// PLAIN-DAG: func.func @neg

// Unexpected and missing diagnostics are errors, reported where they happened / were expected.
// RUN: not effc-opt %S/Inputs/verify-mismatch.mlir --split-input-file --verify-diagnostics \
// RUN:   --pass-pipeline='builtin.module(effc-lower-to-linalg)' 2>&1 | FileCheck %s --check-prefix=MISMATCH
// MISMATCH:      verify-mismatch.mlir:4:8: error: unexpected error: failed to legalize operation 'torch.operator'
// MISMATCH-NEXT: {{^  %0 = torch.operator "torch.aten.frobnicate"}}
// MISMATCH-NEXT: {{^ {7}\^$}}
// MISMATCH:      verify-mismatch.mlir:10:4: error: expected error "this message never appears" was not produced
// MISMATCH-NEXT: {{^// expected-error @below}}
// MISMATCH-NEXT: {{^ {3}\^$}}
// MISMATCH:      effc: error: 2 of 2 chunks of {{.*}}verify-mismatch.mlir did not match the expected diagnostics (diagnostics above)

func.func @relu(%arg0: !torch.vtensor<[2,3],f32>) -> !torch.vtensor<[2,3],f32> {
  %0 = torch.aten.relu %arg0 : !torch.vtensor<[2,3],f32> -> !torch.vtensor<[2,3],f32>
  return %0 : !torch.vtensor<[2,3],f32>
}

// -----

func.func @unlowerable(%arg0: !torch.vtensor<[2,3],f32>) -> !torch.vtensor<[2,3],f32> {
  // expected-error @below {{failed to legalize operation 'torch.operator'}}
  %0 = torch.operator "torch.aten.frobnicate"(%arg0) : (!torch.vtensor<[2,3],f32>) -> !torch.vtensor<[2,3],f32>
  return %0 : !torch.vtensor<[2,3],f32>
}

// -----

func.func @redefined(%a: i32) -> i32 {
  // expected-note @below {{previously defined here}}
  %x = arith.addi %a, %a : i32
  // expected-error @+1 {{redefinition of SSA value '%x'}}
  %x = arith.muli %a, %a : i32
  return %x : i32
}

// -----

func.func @neg(%arg0: !torch.vtensor<[4],f32>) -> !torch.vtensor<[4],f32> {
  %0 = torch.aten.neg %arg0 : !torch.vtensor<[4],f32> -> !torch.vtensor<[4],f32>
  return %0 : !torch.vtensor<[4],f32>
}
