"""CLI for export, report and dashboard: what a user takes away from a study."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def add_result_parsers(sub, add_storage_flags, positive, add_data_flags):
    p = sub.add_parser("export", help="write winner files (JSON + weights)")
    add_storage_flags(p, required_study=True)
    p.add_argument("--trial", type=int, help="export this trial (default: the best feasible)")
    p.add_argument("--pareto", action="store_true", help="export every Pareto-front member")
    p.add_argument("--out", help="output folder (default: studies/<study>-winners)")
    p.add_argument("--artifacts", help="weights folder (default: as for search)")
    add_data_flags(p)

    p = sub.add_parser("report", help="Pareto plots, history, curves and a Markdown summary")
    add_storage_flags(p, required_study=True)
    p.add_argument("--out", help="output folder (default: studies/<study>-report)")
    p.add_argument("--seeds", type=positive(), help="re-train the winner(s) on K seeds")
    p.add_argument("--top", type=positive(), default=10)
    p.add_argument("--confirm", type=int, action="append", default=[], metavar="TRIAL",
                   help="with --seeds: confirm this trial too (may repeat)")
    p.add_argument("--winner", action=argparse.BooleanOptionalAction, default=True,
                   help="with --seeds: re-train the best trial (default); --no-winner "
                        "re-trains only the --confirm trials")
    p.add_argument("--jobs", type=positive(), default=1,
                   help="re-train in K processes sharing the cores (default 1)")
    p.add_argument("--no-png", action="store_true")
    add_data_flags(p)

    p = sub.add_parser("dashboard", help="start optuna-dashboard on the study's storage")
    add_storage_flags(p, required_study=True)
    p.add_argument("--port", type=positive(), default=8080)


def _open(args):
    from nas_mnist.storage import default_storage, load_study
    url = args.storage or default_storage(args.study)
    return load_study(args.study, url), url


def cmd_export(args) -> int:
    from nas_mnist.cli import _load_context
    from nas_mnist.export import fetch_weights, pick_trials, retrain_weights, winner_doc
    from nas_mnist.export import write_winner
    from nas_mnist.storage import default_artifacts
    study, url = _open(args)
    trials = pick_trials(study, trial=args.trial, pareto=args.pareto)
    out = Path(args.out or Path("studies") / f"{args.study}-winners")
    out.mkdir(parents=True, exist_ok=True)
    artifacts = args.artifacts or default_artifacts(url, args.study)
    data = None
    for t in trials:
        doc = winner_doc(study, t)
        weights = out / f"trial{t.number}.pt"
        if fetch_weights(t, artifacts, weights):
            doc["weights"] = {"file": weights.name, "source": "stored by the search"}
        else:
            if data is None:
                _, data = _load_context(args)
            print(f"trial {t.number} kept no weights: re-training it ...", file=sys.stderr)
            summary = retrain_weights(doc, data, weights)
            doc["weights"] = {"file": weights.name, "source": "re-trained at export",
                              "retrained_last_n_min": summary["last_n_min"]}
        path = write_winner(doc, out)
        print(f"trial {t.number}: {doc['params']:,} params, {doc['metrics']['score']:.2f} % "
              f"-> {path} ({doc['weights']['source']})")
    return 0


def cmd_report(args) -> int:
    from nas_mnist.cli import UsageError
    if not args.winner and not args.confirm:
        raise UsageError("--no-winner needs at least one --confirm TRIAL")
    from nas_mnist.report import write_figures
    from nas_mnist.summary import summary_markdown
    study, _ = _open(args)
    out = Path(args.out or Path("studies") / f"{args.study}-report")
    written = write_figures(study, out, png=not args.no_png)
    seed_runs = _confirm_seeds(study, args) if args.seeds else None
    md = out / "summary.md"
    md.write_text(summary_markdown(study, top_k=args.top, seed_runs=seed_runs))
    if seed_runs:
        (out / "seeds.json").write_text(json.dumps(seed_runs, indent=2))
    for path in [*written, md]:
        print(path)
    return 0


def _confirm_seeds(study, args) -> list[dict]:
    from nas_mnist.confirm import confirm_seeds
    from nas_mnist.device import resolve_device
    from nas_mnist.results import feasible
    resolve_device(args.device)
    ranked = feasible(study)
    chosen = [t for i, t in enumerate(ranked)
              if (i == 0 and args.winner) or t.number in args.confirm]
    candidates = [(t.number, t.user_attrs["arch"], t.user_attrs["recipe"]) for t in chosen]
    print(f"re-training {len(candidates)} trial(s) on {args.seeds} seed(s) "
          f"with {args.jobs} process(es) ...", file=sys.stderr)
    return confirm_seeds(candidates, args.seeds, data_dir=args.data_dir, device=args.device,
                         jobs=args.jobs, on_done=lambda r: print(
                             f"  seed {r['seed']}: min-last-3 {r['last_n_min']:.2f} % "
                             f"({r['seconds']:.0f} s)", file=sys.stderr))


def cmd_dashboard(args) -> int:
    import shutil
    from nas_mnist.cli import UsageError
    study, url = _open(args)
    exe = shutil.which("optuna-dashboard") or str(Path(sys.executable).parent / "optuna-dashboard")
    if not Path(exe).exists():
        raise UsageError("optuna-dashboard is not installed: pip install -e '.[dashboard]'")
    if url.startswith("journal:"):
        url = url.removeprefix("journal:")
    print(f"optuna-dashboard for study {study.study_name!r}: http://127.0.0.1:{args.port}/",
          flush=True)
    return subprocess.call([exe, url, "--host", "127.0.0.1", "--port", str(args.port)])


COMMANDS = {"export": cmd_export, "report": cmd_report, "dashboard": cmd_dashboard}
