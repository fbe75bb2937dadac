"""`export`, `report` and `dashboard`: what a user takes away from a study."""

from __future__ import annotations

import argparse
import json
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
                   choices=["onnx", "onnx-int8", "torchscript"],
                   help="also write a deployable model (normalisation folded in), verified "
                        "on the test set; may repeat (onnx and onnx-int8 need the onnx extra; "
                        "onnx-int8: static int8, calibrated on training images)")
    p.add_argument("--calibration-images", type=positive(), default=1024, metavar="N",
                   help="training images that set the int8 ranges (1024; at least 64)")
    add_data_flags(p, split=False)  # re-training uses the study's own split
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("predict", help="classify images with an exported model")
    p.add_argument("model", help="an exported .onnx, .torchscript.pt or winner .json")
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
    add_data_flags(p)
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("dashboard", help="start optuna-dashboard on the study's storage")
    add_storage_flags(p, required_study=True)
    p.add_argument("--port", type=port, default=8080, help="port (8080)")
    p.set_defaults(handler=cmd_dashboard)


def _open(args):
    from nas_mnist.searcher.storage import load_study
    url = storage_url(args)
    return load_study(args.study, url), url


def _out_dir(path: str | None, default: Path) -> Path:
    out = Path(path) if path else default
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def cmd_export(args) -> int:
    from nas_mnist.api import export
    export(study=args.study, storage=storage_url(args), out=args.out, format=args.format,
           trial=args.trial, pareto=args.pareto, artifacts=args.artifacts,
           data_dir=args.data_dir, device=args.device, threads=args.threads,
           calibration_images=args.calibration_images, log=print)
    return 0


def cmd_predict(args) -> int:
    from nas_mnist.api import predict
    result = predict(args.model, args.images, labels=args.labels)
    for name, label in zip(result.names, result.predicted):
        print(f"{name}: {int(label)}")
    if result.accuracy is not None:
        print(f"accuracy {result.accuracy:.2f} % on {len(result.predicted):,} images",
              file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    if not args.winner and not args.confirm:
        raise UsageError("--no-winner needs at least one --confirm TRIAL")
    if not args.winner and args.confirm_top > 1:
        raise UsageError("--no-winner and --confirm-top exclude each other")
    for flag, given in (("--reuse", args.reuse), ("--confirm", args.confirm),
                        ("--confirm-top", args.confirm_top > 1)):
        if given and not args.seeds:
            raise UsageError(f"{flag} needs --seeds")
    from nas_mnist.cli.output import write_text_atomic
    from nas_mnist.results.export import ExportError
    from nas_mnist.results.ranking import feasible
    from nas_mnist.results.report import write_report
    from nas_mnist.searcher.record import StudyMeta
    study, _ = _open(args)
    meta = StudyMeta.from_study(study)
    print(f"study {study.study_name!r}: data sha256 "
          f"{((meta.data_checksum if meta else None) or '?')[:12]} (as searched)")
    if not feasible(study):
        raise ExportError(f"study {study.study_name!r} has no complete feasible trial yet: "
                          f"nothing to report")
    out = _out_dir(args.out, Path("studies") / f"{args.study}-report")
    seed_runs, kept = (_confirm_seeds(study, args, out / "seeds.json") if args.seeds
                       else (_earlier_seed_runs(out), []))
    written, png_note = write_report(study, out, top=args.top, png=not args.no_png,
                                     seed_runs=seed_runs)
    if seed_runs:
        write_text_atomic(out / "seeds.json", json.dumps(seed_runs + kept, indent=2))
    for path in written:
        print(path)
    if png_note:
        print(png_note, file=sys.stderr)
    return 0


def _earlier_seed_runs(out: Path) -> list[dict] | None:
    """The confirmation of an earlier `--seeds` run in this folder, kept in the summary."""
    path = out / "seeds.json"
    if not path.is_file():
        return None
    runs = [r for r in _seed_runs_file(path) if r.get("in_table", True)]
    print(f"keeping the seed runs of {path} (re-run them with --seeds)", file=sys.stderr)
    return runs or None


def _seed_runs_file(path: Path) -> list[dict]:
    """The runs in a seeds.json of a report or a `train --seeds --json-out` file."""
    try:
        runs = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    except (ValueError, RecursionError):
        raise UsageError(f"{path} is not JSON (a seeds.json of a report, or `train --seeds "
                         f"--json-out` output)") from None
    runs = [runs] if isinstance(runs, dict) else runs
    if not isinstance(runs, list) or not all(
            isinstance(r, dict) and isinstance(r.get("mins"), list)
            and isinstance(r.get("seeds", []), list) for r in runs):
        raise UsageError(f"{path} is not a file of seed runs (a seeds.json of a report, or "
                         f"`train --seeds --json-out` output)")
    from nas_mnist.results.confirm import seed_run_problem
    for i, run in enumerate(runs):
        problem = seed_run_problem(run)
        if problem:
            raise UsageError(f"{path}: run {i + 1} (trial {run.get('trial')}): {problem}")
    return runs


def _confirm_seeds(study, args, earlier: Path) -> tuple[list[dict], list[dict]]:
    """(the seed table's runs, earlier runs of the folder it does not hold, kept)."""
    from nas_mnist.engine.data import load_dataset
    from nas_mnist.engine.device import resolve_device
    from nas_mnist.results.confirm import confirm_seeds, reusable_run, runs_to_keep
    from nas_mnist.results.export import check_data
    from nas_mnist.results.ranking import feasible, study_meta
    resolve_device(args.device)
    meta = study_meta(study)
    sources = [(Path(f), _seed_runs_file(Path(f))) for f in args.reuse]
    folder_runs = []
    if earlier.is_file():
        try:
            folder_runs = _seed_runs_file(earlier)
            sources.insert(0, (earlier, folder_runs))
        except UsageError as err:  # it is about to be replaced: say so, do not stop
            print(f"not reusing runs: {err}", file=sys.stderr)
    split_seed = meta.split_seed or 0  # the study's own split (older studies: seed 0)
    data = load_dataset(args.data_dir, val_split=meta.val_split, seed=split_seed)
    check_data(meta, data)
    ranked = feasible(study)
    unknown = set(args.confirm) - {r.number for r in ranked}
    if unknown:
        raise UsageError(f"--confirm {sorted(unknown)}: not complete feasible trials of "
                         f"study {study.study_name!r}")
    chosen = [r for i, r in enumerate(ranked)
              if (i < args.confirm_top and args.winner) or r.number in args.confirm]
    runs = {}
    for r in chosen:
        for path, earlier_runs in sources:
            run = reusable_run(earlier_runs, r.arch, r.recipe, args.seeds,
                               val_split=meta.val_split, data_checksum=data.checksum)
            if run:
                runs[r.number] = {**run, "trial": r.number,
                                  "reused_from": run.get("reused_from") or str(path)}
                print(f"trial {r.number}: {args.seeds} seed run(s) reused from {path}",
                      file=sys.stderr)
                break
    candidates = [(r.number, r.arch, r.recipe) for r in chosen if r.number not in runs]
    if candidates:
        print(f"re-training {len(candidates)} trial(s) on {args.seeds} seed(s) "
              f"with {args.jobs} process(es) ...", file=sys.stderr)

        def on_done(r):
            score = r["last_n_min"] if meta.objective == "min" else r["last_n_mean"]
            print(f"  trial {r['trial']} seed {r['seed']}: {meta.objective}-last-{meta.last_n} {score:.2f} % "
                  f"({r['seconds']:.0f} s)", file=sys.stderr)

        trained = confirm_seeds(candidates, args.seeds, data_dir=args.data_dir,
                                val_split=meta.val_split, split_seed=split_seed,
                                device=args.device, jobs=args.jobs,
                                threads=args.threads, on_done=on_done)
        runs.update((run["trial"], {**run, "data_checksum": data.checksum}) for run in trained)
    table = [runs[r.number] for r in chosen]
    return table, runs_to_keep(folder_runs, table)


def cmd_dashboard(args) -> int:
    import shutil
    from nas_mnist.searcher.storage import mask_url
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
