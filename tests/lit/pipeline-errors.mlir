// Malformed pipelines, unknown passes and unknown options: one `effc: error:` line that points at
// the column (with close matches), the pipeline and a caret below it, and exit code 1. MLIR's own
// rejections (wrong anchor, bad option values, pipelines that would abort the process) read the same.

// RUN: not effc-opt %s --pass-pipeline='builtin.module(cse' 2>&1 | FileCheck %s --check-prefix=UNCLOSED
// UNCLOSED:      effc: error: pipeline:1:19: expected ')' to close 'builtin.module(' at column 15
// UNCLOSED-NEXT: {{^  builtin.module\(cse$}}
// UNCLOSED-NEXT: {{^ {20}\^$}}

// RUN: not effc-opt %s --pass-pipeline='builtin.module(cse canonicalize)' 2>&1 | FileCheck %s --check-prefix=NO-COMMA
// NO-COMMA:      effc: error: pipeline:1:20: expected ',' or ')'
// NO-COMMA-NEXT: {{^  builtin.module\(cse canonicalize\)$}}
// NO-COMMA-NEXT: {{^ {21}\^$}}

// RUN: not effc-opt %s --pass-pipeline='builtin.module(cse))' 2>&1 | FileCheck %s --check-prefix=TRAILING
// TRAILING: effc: error: pipeline:1:20: unexpected ')' after the pipeline; put every pass inside 'builtin.module(...)'

// RUN: not effc-opt %s --pass-pipeline='builtin.module(,cse)' 2>&1 | FileCheck %s --check-prefix=NO-NAME
// NO-NAME: effc: error: pipeline:1:16: expected a pass name, found ','

// RUN: not effc-opt %s --pass-pipeline='cse,canonicalize' 2>&1 | FileCheck %s --check-prefix=NO-ANCHOR
// NO-ANCHOR: effc: error: pipeline:1:1: expected the pipeline to be wrapped in its anchor op, e.g. 'builtin.module(cse,canonicalize)'

// RUN: not effc-opt %s --pass-pipeline='func.func(cse)' 2>&1 | FileCheck %s --check-prefix=ROOT
// ROOT: effc: error: pipeline:1:1: the pipeline must be anchored on 'builtin.module' (effc runs on modules), not 'func.func'; write 'builtin.module(func.func(...))'

// RUN: not effc-opt %s --pass-pipeline='builtin.module(canonicalize{max-iterations=3)' 2>&1 | FileCheck %s --check-prefix=OPEN-BRACE
// OPEN-BRACE: effc: error: pipeline:1:28: expected '}' to close the options of 'canonicalize'

// RUN: not effc-opt %s --pass-pipeline="builtin.module(canonicalize{enable-patterns='a b})" 2>&1 | FileCheck %s --check-prefix=QUOTE
// QUOTE: effc: error: pipeline:1:45: unterminated ' in the value of option 'enable-patterns'

// Unknown passes: close matches among effc passes and upstream passes this MLIR build accepts.
// RUN: not effc-opt %s --pass-pipeline='builtin.module(func.func(cse),canonicalise)' 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// UNKNOWN:      effc: error: pipeline:1:31: unknown pass 'canonicalise'; did you mean canonicalize? (effc passes: 'effc opt --list-passes')
// UNKNOWN-NEXT: {{^  builtin.module\(func.func\(cse\),canonicalise\)$}}
// UNKNOWN-NEXT: {{^ {32}\^$}}

// RUN: not effc-opt %s --pass-pipeline='builtin.module(effc-lower-to-linalgg)' 2>&1 | FileCheck %s --check-prefix=UNKNOWN-EFFC
// UNKNOWN-EFFC: effc: error: pipeline:1:16: unknown pass 'effc-lower-to-linalgg'; did you mean effc-lower-to-linalg,

// Unknown options and bad values, for effc passes and upstream ones.
// RUN: not effc-opt %s --pass-pipeline='builtin.module(effc-lower-to-linalg{allow-non-finite=false})' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=EFFC-OPTION
// EFFC-OPTION:      effc: error: pipeline:1:37: pass 'effc-lower-to-linalg' has no option 'allow-non-finite'; did you mean allow-non-finites? (options: allow-non-finites)
// EFFC-OPTION-NEXT: {{^  builtin.module\(effc-lower-to-linalg\{allow-non-finite=false\}\)$}}
// EFFC-OPTION-NEXT: {{^ {38}\^$}}

// RUN: not effc-opt %s --pass-pipeline='builtin.module(effc-lower-to-linalg{allow-non-finites=maybe})' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=EFFC-VALUE
// EFFC-VALUE: effc: error: pipeline:1:37: pass 'effc-lower-to-linalg': option 'allow-non-finites' got 'maybe', expected true or false

// RUN: not effc-opt %s --pass-pipeline='builtin.module(effc-lower-to-linalg{allow-non-finites=true allow-non-finites=false})' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=EFFC-TWICE
// EFFC-TWICE: effc: error: pipeline:1:60: option 'allow-non-finites' of 'effc-lower-to-linalg' given twice

// RUN: not effc-opt %s --pass-pipeline='builtin.module(func.func(canonicalize{max-iteration=3}))' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=UPSTREAM-OPTION
// UPSTREAM-OPTION: effc: error: pipeline:1:39: pass 'canonicalize' has no option 'max-iteration'; did you mean max-iterations?

// RUN: not effc-opt %s --pass-pipeline='builtin.module(canonicalize{max-iterations=many})' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=UPSTREAM-VALUE
// UPSTREAM-VALUE: effc: error: pipeline:1:29: invalid value for option 'max-iterations' of 'canonicalize': 'many' value invalid for long argument!

// Anchors: MLIR's own restriction, a torch-mlir pipeline under func.func (its builder would abort the
// process if added in-process), and an effc pass under an anchor it cannot be hoisted out of.
// RUN: not effc-opt %s --pass-pipeline='builtin.module(torch-simplify-shape-calculations)' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=FUNC-PASS
// FUNC-PASS: effc: error: pipeline:1:16: pass 'torch-simplify-shape-calculations' runs on 'func.func', not 'builtin.module'; nest it: func.func(torch-simplify-shape-calculations)

// RUN: not effc-opt %s --pass-pipeline='builtin.module(func.func(torch-backend-to-linalg-on-tensors-backend-pipeline))' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=NESTED-PIPELINE
// NESTED-PIPELINE: effc: error: pipeline:1:26: pass 'torch-backend-to-linalg-on-tensors-backend-pipeline' runs on 'builtin.module', not 'func.func'; move it out of 'func.func(...)'

// RUN: not effc-opt %s --pass-pipeline='builtin.module(gpu.module(effc-lower-to-linalg))' 2>&1 \
// RUN:   | FileCheck %s --check-prefix=EFFC-ANCHOR
// EFFC-ANCHOR: effc: error: pipeline:1:27: effc pass 'effc-lower-to-linalg' cannot run under 'gpu.module': effc passes run on builtin.module (or inside func.func, hoisted); move it out of 'gpu.module(...)'

// Pipeline errors come before the input is read, and nothing reaches stdout.
// RUN: not effc-opt %S/does-not-exist.mlir --pass-pipeline='builtin.module(cse' 2>&1 | FileCheck %s --check-prefix=UNCLOSED
// RUN: not effc-opt %S/does-not-exist.mlir 2>&1 | FileCheck %s --check-prefix=NO-FILE
// NO-FILE: effc: error: cannot read '{{.*}}does-not-exist.mlir': No such file or directory

func.func @f(%a: i32) -> i32 {
  return %a : i32
}
