"""Rebuild the packaged prior (nas_mnist/priors/mnist.json) from the shipped studies.

The prior is data with its provenance, never hand-edited numbers:
- configs: every completed trial of each study (its arch, recipe and seed-0 score), with the
  multi-seed scores of `studies/<study>-report/seeds.json` where the report confirmed it, else
  the search's own confirmation runs (--confirm-top); a network that entered a study with its
  stored runs (reused, not trained: searcher/reuse.py) is one fact, kept where it was measured:
  only the seeds run on top of it there are added to that config;
- curves: every trained trial's per-epoch accuracies (for the stopping rule's first rungs),
  with the study's budget, run length, space digest and trainer, and whether the trial
  evaluated an EMA of its weights.
- public: the published designs re-trained here (PUBLIC below: their runs in
  studies/confirmations and benchmarks/results), the yardstick of the frontier figure that
  `nas-mnist report` draws.
Every study of nas-mnist that searched architectures is read (recipe studies, of one fixed
network, are not: they have no architecture to offer); none is left out by name.

    python benchmarks/build_prior.py                 # all studies/*.db -> the packaged prior
    python benchmarks/build_prior.py --studies studies/mnist-10k-v3.db --out /tmp/p.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402

from nas_mnist.searcher.prior import FORMAT, PACKAGED_PRIOR, parse_prior  # noqa: E402
from nas_mnist.searcher.record import StudyMeta, records, seed_runs, trainer_key  # noqa: E402
from nas_mnist.api.network import count  # noqa: E402
from nas_mnist.files import write_text  # noqa: E402


CONFIRMATIONS = ROOT / "studies" / "confirmations"
RESULTS = ROOT / "benchmarks" / "results"
# Public designs re-trained here: (name, where it was published, runs file, recipe: their own
# as closely as the builder expresses it, or the tool's default).
PUBLIC = [
    ("woolly3762", "adilsammar/woolly-of-cv",
     CONFIRMATIONS / "woolly3762-own-recipe-test-epyc.json", "own"),
    ("woolly3762 (linear)", "adilsammar/woolly-of-cv",
     CONFIRMATIONS / "woolly3762-linear-test-epyc.json", "own"),
    ("woolly3762", "adilsammar/woolly-of-cv",
     RESULTS / "woolly3762-default-recipe-test-epyc.json", "tool"),
    ("woolly4838", "adilsammar/woolly-of-cv",
     CONFIRMATIONS / "woolly4838-own-recipe-test-epyc.json", "own"),
    ("woolly4838", "adilsammar/woolly-of-cv",
     RESULTS / "woolly4838-default-recipe-test-epyc.json", "tool"),
    ("tsai6260", "Shwethaamrutha/TSAI-S6",
     CONFIRMATIONS / "tsai6260-own-recipe-test-epyc.json", "own"),
    ("tsai6260", "Shwethaamrutha/TSAI-S6",
     RESULTS / "tsai6260-default-recipe-test-epyc.json", "tool"),
    ("ref8k", "the typical 8,172-parameter answer (99.49 % logged)",
     CONFIRMATIONS / "ref8k-test.json", "tool"),
    # not expressible by the builder: modules of benchmarks/public_designs.py
    ("rusl1936", "ruslangrimov/mnist-minimal-model",
     CONFIRMATIONS / "rusl1936-own-recipe-test-xeon.json", "own"),
    ("rusl1936", "ruslangrimov/mnist-minimal-model",
     CONFIRMATIONS / "rusl1936-tool-recipe-test-xeon.json", "tool"),
    ("rusl2180", "ruslangrimov/mnist-minimal-model",
     CONFIRMATIONS / "rusl2180-own-recipe-test-xeon.json", "own"),
    ("rusl2180", "ruslangrimov/mnist-minimal-model",
     CONFIRMATIONS / "rusl2180-tool-recipe-test-xeon.json", "tool"),
    ("rusl4142", "ruslangrimov/mnist-minimal-model",
     CONFIRMATIONS / "rusl4142-own-recipe-test-xeon.json", "own"),
    ("rusl4142", "ruslangrimov/mnist-minimal-model",
     CONFIRMATIONS / "rusl4142-tool-recipe-test-xeon.json", "tool"),
]


def public_entries() -> list[dict]:
    """The public designs' runs, one entry per design and recipe (a runs file that names no
    data was trained by `nas-mnist train` on the packaged MNIST)."""
    from nas_mnist.engine.data import load_dataset
    packaged = load_dataset().checksum
    rows = []
    for name, source, path, recipe in PUBLIC:
        doc = json.loads(path.read_text(encoding="utf-8"))
        scores = doc["mins"]
        params = doc.get("params") or count(name.split()[0])["params"]  # the packaged config
        rows.append({"name": name, "source": source, "params": params, "recipe": recipe,
                     "seed_scores": scores, "mean": round(sum(scores) / len(scores), 3),
                     "data_checksum": doc.get("data_checksum", packaged),
                     "file": str(path.relative_to(ROOT))})
    return rows


def _seed_runs(report: Path) -> dict[int, dict]:
    """trial -> {seeds, mins} from a report's seeds.json (absent: none)."""
    path = report / "seeds.json"
    if not path.is_file():
        return {}
    return {r["trial"]: r for r in json.loads(path.read_text())
            if isinstance(r, dict) and isinstance(r.get("trial"), int)}


def study_entries(db: Path) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """The configs, curves and source line of every study in `db`, and the runs made on top
    of reused networks (to be added to the config where each was first measured)."""
    url = f"sqlite:///{db}"
    configs, curves, sources, on_reused = [], [], [], []
    for summary in optuna.get_all_study_summaries(url, include_best_trial=False):
        name = summary.study_name
        study = optuna.load_study(study_name=name, storage=url)
        meta = StudyMeta.from_study(study)
        if meta is None or meta.objective != "min" or meta.eval_split != "test":
            continue
        if meta.arch is not None:
            # A recipe study (one network, its recipe searched) is left out for now: its best
            # would become the warm start of every 10,000 search, and the time-to-target
            # figures in the README were measured without it.
            continue
        seeds = _seed_runs(db.parent / f"{name}-report")
        recs = records(study)
        held = seed_runs(study)
        sources.append({"study": name, "file": str(db.relative_to(ROOT)), "budget": meta.budget,
                        "epochs": meta.epochs, "last_n": meta.last_n, "space": meta.space,
                        "space_digest": meta.space_digest, "trials": len(recs),
                        "seed_runs": f"{db.parent.relative_to(ROOT)}/{name}-report/seeds.json"
                                     if seeds else None})
        for r in recs:
            if r.reused:  # its curve and stored runs are another study's: only new runs count
                runs = {int(k): v for k, v in held.get(r.number, {}).get("runs", {}).items()
                        if not v.get("reused")}
                if runs:
                    on_reused.append({"arch": r.arch, "recipe": r.recipe,
                                      "data_checksum": meta.data_checksum, "study": name,
                                      "trial": r.number, "runs": runs})
                continue
            if not r.arch or not r.accs:
                continue
            ema = bool((r.recipe or {}).get("ema"))
            curves.append({"study": name, "trial": r.number, "budget": meta.budget,
                           "epochs": meta.epochs, "ema": ema, "params": r.n_params,
                           "accs": r.accs, "data_checksum": meta.data_checksum,
                           "space_digest": meta.space_digest, "trainer": trainer_key(meta)})
            if r.kind != "complete" or r.value is None or r.seed != 0:
                continue
            run = seeds.get(r.number)
            if run and run.get("seeds") and len(run["seeds"]) == len(run.get("mins", [])):
                seed_list, scores = list(run["seeds"]), list(run["mins"])
            else:  # the trial's own seed and the search's own confirmation runs
                seed_list = [r.seed] + [int(k) for k in r.more_seeds]
                scores = [r.value] + list(r.more_seeds.values())
            done = study.trials[r.number].datetime_complete
            configs.append({"study": name, "trial": r.number, "arch": r.arch,
                            "recipe": r.recipe, "params": r.n_params, "seeds": seed_list,
                            "scores": scores, "data_checksum": meta.data_checksum,
                            "measured": f"{r.device or 'an unrecorded device'}, "
                                        f"{done:%Y-%m-%d}" if done else r.device})
    return configs, curves, sources, on_reused


def add_runs_on_reused(configs: list[dict], on_reused: list[dict]) -> None:
    """Add the seeds run on top of a reused network to the config where it was measured (the
    first with the same arch, recipe and data); one with no such config is left out (its
    stored runs came from elsewhere)."""
    for extra in on_reused:
        same = (extra["arch"], extra["recipe"], extra["data_checksum"])
        origin = next((c for c in configs
                       if (c["arch"], c["recipe"], c["data_checksum"]) == same), None)
        new = {s: run for s, run in sorted(extra["runs"].items())
               if origin is not None and s not in origin["seeds"]}
        if not new:
            continue
        origin["seeds"] += list(new)
        origin["scores"] += [run["score"] for run in new.values()]
        devices = sorted({run.get("device") or "an unrecorded device" for run in new.values()})
        origin["measured"] = (f"{origin['measured']}; seeds {', '.join(map(str, new))}: "
                              f"{', '.join(devices)} ({extra['study']} trial {extra['trial']})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", nargs="+", type=Path,
                        default=sorted((ROOT / "studies").glob("*.db")))
    parser.add_argument("--out", type=Path, default=PACKAGED_PRIOR)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    configs, curves, sources, on_reused = [], [], [], []
    for db in args.studies:
        c, k, s, r = study_entries(db.resolve())
        configs += c
        curves += k
        sources += s
        on_reused += r
    add_runs_on_reused(configs, on_reused)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    doc = {"format": FORMAT,
           "about": "Built by benchmarks/build_prior.py from the studies below; do not edit.",
           "commit": commit, "built_from": sources, "configs": configs, "curves": curves,
           "public": public_entries()}
    parse_prior(doc, str(args.out))  # what is written must load
    text = json.dumps(doc, separators=(",", ":")) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, text)
    confirmed = sum(len(c["seeds"]) > 1 for c in configs)
    print(f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}: "
          f"{len(configs)} configurations ({confirmed} on several seeds), {len(curves)} curves "
          f"from {len(sources)} studies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
