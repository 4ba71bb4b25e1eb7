"""`effc profile MODEL`: predicted (roofline) against measured (IREE) time per op class.

    effc profile minilm -o minilm-profile/               # llvm-cpu, roofline of host-cpu
    effc profile model.pt2 --target cuda --hardware h200-sxm

The model is imported, annotated by `effc-profile`, compiled by IREE with every annotated op tagged,
and run under IREE's HAL profiler; each dispatch's time is mapped back to torch ops and op classes
(see `effc.passes.dispatch_profile`). Writes report.json and report.html and prints a summary.
"""

from __future__ import annotations

import argparse
from typing import Any

from effc.compiler.compile_cmd import add_model_arguments, model_options
from effc.compiler.errors import EffcError
from effc.compiler.optimize import with_precision_passes

DEFAULT_HARDWARE = {"llvm-cpu": "host-cpu", "cuda": "h100-sxm"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="predicted vs measured time per op class (effc-profile roofline vs IREE dispatch timings)",
        description="Compile MODEL with IREE, time every dispatch with IREE's HAL profiler, map dispatches "
        "back to torch ops and compare with the effc-profile roofline. Writes report.json and report.html.",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--hardware",
        help="roofline device id from passes/data/hardware.json (default: host-cpu for llvm-cpu, h100-sxm for cuda)",
    )
    parser.add_argument("--pass-pipeline", help="effc/MLIR pipeline to run on the torch-dialect module first")
    parser.add_argument("-o", "--output", metavar="DIR", help="report directory (default: MODEL_NAME-profile)")
    parser.add_argument("--repetitions", type=int, default=20, help="profiled calls of the model (default: 20)")
    parser.add_argument("--top", type=int, default=10, help="rows in the top dispatch/op tables (default: 10)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import shutil
    import tempfile
    from pathlib import Path

    from torch_mlir import ir

    from effc.compiler.api import fold_allowed, iree_compile, note_weight_rewrites, resolve_iree_flags
    from effc.compiler.importer import import_model, resolve_attention
    from effc.compiler.input_spec import parse_input_spec
    from effc.compiler.iree_backend import RUNTIME_DEVICE, check_target
    from effc.compiler.loader import load_model
    from effc.compiler.progress import Stages, report_console
    from effc.passes.dispatch_profile import attribute, check_device, dispatch_ops, hal_profile, tag_ops
    from effc.passes.hardware import host_cpu_mismatch, load_hardware
    from effc.passes.profile import PREFIX, ProfilePass
    from effc.passes.report import ProfileReport, print_summary, write_report

    check_target(args.target)
    if args.repetitions < 1:
        raise EffcError(f"--repetitions must be at least 1, got {args.repetitions}")
    hardware = load_hardware(args.hardware or DEFAULT_HARDWARE[args.target])
    device = RUNTIME_DEVICE[args.target]
    check_device(device)
    options = model_options(args, args.pass_pipeline)
    options["pipeline"] = with_precision_passes(options["pipeline"], args.matmul_precision, args.target)
    stages = Stages()
    flags = resolve_iree_flags(
        args.target, args.matmul_precision, options["iree_flags"], options["optional_iree_flags"], stages
    )
    mismatch = host_cpu_mismatch(hardware.id) if hardware.kind == "cpu" else None
    if mismatch:
        stages.note(mismatch)
    with stages.stage("load model"):
        loaded = load_model(args.model, trust_pickle=args.trust_pickle)
    with stages.stage("export and import to torch-mlir"):
        specs = tuple(parse_input_spec(s) for s in args.input)
        attention = resolve_attention(options["attention"], args.target, loaded)
        fold_gqa = options.get("fold_gqa", False) and fold_allowed(options["pipeline"], stages)
        imported = import_model(
            loaded, specs, attention=attention, fold_gqa=fold_gqa, key_multiple=options.get("key_multiple", 1)
        )
        if note := imported.padding_note():
            stages.note(note)
    module = imported.module
    if options["pipeline"]:
        from effc.passes import run as run_pipeline

        with stages.stage("effc pass pipeline"):
            run_pipeline(module, options["pipeline"])
        note_weight_rewrites(module, stages)
    with stages.stage(f"effc-profile{{target={hardware.id}}}"):
        ProfilePass(target=hardware.id).apply(module.operation)
        ops = tag_ops(module)
    attrs = module.operation.attributes
    with tempfile.TemporaryDirectory(prefix="effc-profile-") as tmp:
        sources, vmfb = Path(tmp) / "sources", Path(tmp) / "module.vmfb"
        with stages.stage(f"IREE compile for {args.target}, dumping executable sources"):
            module_bytes, _ = iree_compile(
                module.operation.get_asm(enable_debug_info=True),
                module,
                flags,
                cuda_arch=args.cuda_arch,
                dispatch_edits=options.get("dispatch_edits", ()),
                extra_flags=(f"--iree-hal-dump-executable-sources-to={sources}", "--mlir-print-debuginfo"),
                # An earlier attempt's dump (a flag IREE rejected, the first of two compiles) would mix with this one's.
                before_each=lambda: shutil.rmtree(sources, ignore_errors=True),
            )
            vmfb.write_bytes(module_bytes)
        with stages.stage(f"{args.repetitions} calls on {device} under IREE's HAL profiler"):
            inputs = [t.detach().numpy() for t in imported.example_inputs]
            profile = hal_profile(vmfb, inputs, device=device, calls=args.repetitions)
        dispatches = attribute(profile, dispatch_ops(sources), ops)
    report = ProfileReport(
        model=loaded.name,
        target=args.target,
        hardware=hardware.id,
        hardware_name=hardware.name,
        device=device,
        summary={
            "torch_counted_flops": ir.IntegerAttr(attrs[PREFIX + "total_flops"]).value,
            "bytes_moved": ir.IntegerAttr(attrs[PREFIX + "total_bytes"]).value,
            "predicted_time_s": ir.FloatAttr(attrs[PREFIX + "est_time_s"]).value,
            "measured_dispatch_time_s": sum(d.time_s for d in dispatches),
            "wall_time_per_call_s": profile.wall_per_call_s,
            "dispatches": len(dispatches),
        },
        ops=ops,
        dispatches=dispatches,
        notes=stages.notes,
    )
    json_path, html_path = write_report(report, Path(args.output or f"{loaded.name}-profile"), top=args.top)
    console = report_console()
    print_summary(report, console, top=args.top)
    console.print(f"wrote {json_path} and {html_path}")
    return 0
