"""`export`, `report` and `dashboard`: what a user takes away from a study."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from nas_mnist.cli.common import (UsageError, add_data_flags, add_storage_flags, port, positive,
                                  storage_url)


def add_parsers(sub) -> None:
    p = sub.add_parser("export", help="write winner files (JSON + weights)")
    add_storage_flags(p, required_study=True)
    p.add_argument("--trial", type=int, help="export this trial (default: the best feasible)")
    p.add_argument("--pareto", action="store_true", help="export every Pareto-front member "
                                                         "(score vs parameters)")
    p.add_argument("--out", help="output folder (default: studies/<study>-winners)")
    p.add_argument("--artifacts", help="weights folder (default: as for search)")
    p.add_argument("--format", action="append", default=[],
                   choices=["onnx", "onnx-int8", "torchscript", "tflite-int8", "c"],
                   help="also write a deployable model (normalisation folded in), verified "
                        "on the test set; may repeat (onnx and onnx-int8 need the onnx extra, "
                        "tflite-int8 the tflite extra, c a C compiler; the int8 formats are "
                        "calibrated on training images)")
    p.add_argument("--calibration-images", type=positive(), default=None, metavar="N",
                   help="training images that set the int8 ranges (1024; at least 64)")
    p.add_argument("--device-ram", type=positive(), default=None, metavar="BYTES",
                   help="RAM of the target part: a tflite-int8 or c export whose arena does "
                        "not fit is refused")
    add_data_flags(p, split=False)  # re-training uses the study's own split
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("predict", help="classify images with an exported model")
    p.add_argument("model", help="an exported .onnx, .int8.tflite, .torchscript.pt or winner .json")
    p.add_argument("images", nargs="+", help="an IDX images file (gzipped or not) or PNG files")
    p.add_argument("--labels", help="an IDX labels file: also print the accuracy")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("report", help="Pareto plots, history, curves and a Markdown summary")
    add_storage_flags(p, required_study=True)
    p.add_argument("--out", help="output folder (default: studies/<study>-report)")
    p.add_argument("--seeds", type=positive(), help="re-train the winner(s) on K seeds")
    p.add_argument("--top", type=positive(), default=10, help="rows in the top table (10)")
    p.add_argument("--confirm", type=int, action="append", default=[], metavar="TRIAL",
                   help="with --seeds: confirm this trial too (may repeat)")
    p.add_argument("--confirm-top", type=positive(), default=1, metavar="K",
                   help="with --seeds: confirm the K best trials (default 1: the winner)")
    p.add_argument("--winner", action=argparse.BooleanOptionalAction, default=True,
                   help="with --seeds: re-train the best trial (default); --no-winner "
                        "re-trains only the --confirm trials")
    p.add_argument("--reuse", action="append", default=[], metavar="FILE",
                   help="with --seeds: take seed runs of exactly the same configuration from "
                        "FILE (`train --seeds --json-out` output or an earlier seeds.json) "
                        "instead of training them again; may repeat (the report folder's "
                        "seeds.json is always looked at)")
    p.add_argument("--jobs", type=positive(), default=1,
                   help="re-train in K processes sharing the cores (default 1)")
    p.add_argument("--no-png", action="store_true", help="write no PNG copies of the figures")
    add_data_flags(p, split=False)  # re-training uses the study's own split
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("dashboard", help="start optuna-dashboard on the study's storage")
    add_storage_flags(p, required_study=True)
    p.add_argument("--port", type=port, default=8080, help="port (8080)")
    p.set_defaults(handler=cmd_dashboard)


def _open(args):
    from nas_mnist.api.storage import open_stored_study
    url = storage_url(args)
    return open_stored_study(args.study, url), url


def cmd_export(args) -> int:
    from nas_mnist.api import export
    export(study=args.study, storage=storage_url(args), out=args.out, format=args.format,
           trial=args.trial, pareto=args.pareto, artifacts=args.artifacts,
           data_dir=args.data_dir, device=args.device, threads=args.threads,
           calibration_images=args.calibration_images, device_ram=args.device_ram, log=print)
    return 0


def cmd_predict(args) -> int:
    from nas_mnist.api import predict
    result = predict(args.model, args.images, labels=args.labels)
    for caveat in result.caveats:
        print(f"warning: {caveat}", file=sys.stderr)
    for name, label in zip(result.names, result.predicted):
        print(f"{name}: {int(label)}")
    if result.accuracy is not None:
        print(f"accuracy {result.accuracy:.2f} % on {len(result.predicted):,} images",
              file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    from nas_mnist.api import load_study, report
    url = storage_url(args)
    written = report(study=args.study, storage=url, out=args.out, top=args.top,
                     no_png=args.no_png, seeds=args.seeds, confirm=args.confirm,
                     confirm_top=args.confirm_top, winner=args.winner, reuse=args.reuse,
                     jobs=args.jobs, data_dir=args.data_dir, device=args.device,
                     threads=args.threads, log=lambda line: print(line, file=sys.stderr))
    checksum = load_study(args.study, url).meta.data_checksum
    print(f"study {args.study!r}: data sha256 {(checksum or '?')[:12]} (as searched)")
    for path in written:
        print(path)
    return 0


def cmd_dashboard(args) -> int:
    import shutil
    from nas_mnist.api.storage import mask_url
    study, url = _open(args)
    exe = shutil.which("optuna-dashboard") or str(Path(sys.executable).parent / "optuna-dashboard")
    if not Path(exe).exists():
        raise UsageError("optuna-dashboard is not installed: pip install -e '.[dashboard]'")
    url = url.removeprefix("journal:")
    print(f"optuna-dashboard for study {study.study_name!r} ({mask_url(url)}): "
          f"http://127.0.0.1:{args.port}/  (Ctrl-C stops it)", flush=True)
    # Its own session: Ctrl-C reaches only us, and we stop it quietly (nothing to resume).
    child = subprocess.Popen([exe, url, "--host", "127.0.0.1", "--port", str(args.port)],
                             start_new_session=True)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait(timeout=30)
        print("dashboard stopped", file=sys.stderr)
        return 0
