"""What earlier studies know: the configurations to start a search from (a warm start) and
the learning curves that set the stopping rule's rungs before a study has peers of its own.

The packaged prior (`nas_mnist/priors/mnist.json`) is data, rebuilt from the shipped studies by
`benchmarks/build_prior.py` and never edited by hand: each configuration and curve carries its
provenance (study, trial, seeds, data checksum). A prior is used only on the data it was made
on (its checksum).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from nas_mnist.errors import NasMnistError, SpecError
from nas_mnist.searcher.record import CONFIRMED_SEEDS  # noqa: F401 (its home: the record)
from nas_mnist.spec.arch import ArchConfig
from nas_mnist.spec.limits import Limits  # noqa: F401 (its home before: searcher.prior)
from nas_mnist.spec.recipe import Recipe

PRIOR_DIR = Path(__file__).resolve().parent.parent / "priors"
PACKAGED_PRIOR = PRIOR_DIR / "mnist.json"
FORMAT = "nas-mnist prior 1"
WARM_START_K = 3  # configurations a warm start enqueues
MAX_PRIOR_BYTES = 20_000_000
# Rung peers come from prior studies whose budget is within this factor of the study's.
BUDGET_FACTOR = 2.0


class PriorError(NasMnistError, ValueError):
    """A prior file is missing, malformed or made for other data; the message names it."""


@dataclass(frozen=True)
class PriorConfig:
    study: str
    trial: int
    arch: ArchConfig
    recipe: Recipe
    params: int
    scores: tuple[float, ...]  # min-last-N per training seed, seed order as `seeds`
    seeds: tuple[int, ...]
    data_checksum: str
    measured: str | None = None  # where the seed-0 run was measured: device and date

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)

    @property
    def confirmed(self) -> bool:
        return len(self.seeds) >= CONFIRMED_SEEDS

    def rank_key(self) -> tuple:
        """Confirmed configurations first, by their mean over seeds; then the rest by score."""
        return (not self.confirmed, -self.mean, self.params)

    def provenance(self) -> str:
        seeds = (f"{len(self.seeds)} seeds, mean {self.mean:.2f} %" if len(self.seeds) > 1
                 else f"seed {self.seeds[0]}, {self.mean:.2f} %")
        return f"{self.study} trial {self.trial} ({seeds})"


@dataclass(frozen=True)
class PriorCurve:
    study: str
    trial: int
    budget: int
    epochs: int
    ema: bool  # evaluated a moving average of the weights (shifts early accuracy ~2.7 points)
    params: int
    accs: tuple[float, ...]
    data_checksum: str
    space_digest: str | None = None  # the space it was sampled from (older priors: unknown)
    trainer: str | None = None  # "dropout_rng/eval_precision" it trained with (unknown: None)


@dataclass(frozen=True)
class PublicDesign:
    """A published network re-trained here on several seeds, under its own recipe ("own") or
    the tool's ("tool"): the frontier's yardstick."""

    name: str
    source: str  # where it was published
    params: int
    recipe: str  # "own" or "tool"
    scores: tuple[float, ...]  # min-last-3 per training seed
    data_checksum: str
    file: str  # the runs, in the repository

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)


@dataclass(frozen=True)
class Prior:
    source: str  # file it was read from
    configs: tuple[PriorConfig, ...] = ()
    curves: tuple[PriorCurve, ...] = ()
    built_from: tuple[dict, ...] = field(default=())
    public: tuple[PublicDesign, ...] = ()

    def without(self, study: str) -> "Prior":
        """This prior less what it holds of `study`: a resumed study that is in the prior has
        its own trials as peers already, and judged by them twice it weighed them double."""
        return replace(self, configs=tuple(c for c in self.configs if c.study != study),
                       curves=tuple(c for c in self.curves if c.study != study))

    def curves_for(self, *, data_checksum: str | None, epochs: int, budget: int,
                   ema: bool, space_digest: str | None = None,
                   trainer: str | None = None) -> list[PriorCurve]:
        """Curves that apply: the same data, run length, recipe family (EMA or not), space
        and trainer, at a nearby budget. A curve whose space or trainer is unknown (an older
        prior) applies to no study that names its own: a focused space's curves set a bar
        the wide space's networks could not pass (all 28 of a 20,000 study stopped at
        epoch 2)."""
        return [c for c in self.curves
                if c.data_checksum == data_checksum and c.epochs == epochs and c.ema == ema
                and budget / BUDGET_FACTOR <= c.budget <= budget * BUDGET_FACTOR
                and (space_digest is None or c.space_digest == space_digest)
                and (trainer is None or c.trainer == trainer)]


def _fail(source, what: str):
    raise PriorError(f"prior {source}: {what}")


def _number(value, source, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        _fail(source, f"{where} must be a finite number, got {value!r}")
    return float(value)


def _accuracy(value, source, where: str) -> float:
    value = _number(value, source, where)
    if not 0.0 <= value <= 100.0:
        _fail(source, f"{where} must be a percentage in [0, 100], got {value!r}")
    return value


def _int(value, source, where: str, low: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        _fail(source, f"{where} must be an integer >= {low}, got {value!r}")
    return value


def _optional_str(c: dict, key: str, source, where: str) -> str | None:
    value = c.get(key)
    if value is not None and not isinstance(value, str):
        _fail(source, f"{where}.{key} must be a string, got {value!r}")
    if key == "trainer" and value is not None:
        rng, _, precision = value.partition("/")
        from nas_mnist.spec.recipe import DROPOUT_RNGS, EVAL_PRECISIONS
        if rng not in DROPOUT_RNGS or precision not in EVAL_PRECISIONS:
            _fail(source, f"{where}.trainer names no trainer setting: {value!r} (expected "
                          f"DROPOUT_RNG/EVAL_PRECISION, e.g. hash/train)")
    return value


def parse_prior(doc, source: str) -> Prior:
    """Validate a prior document (types, ranges, lengths) into a Prior."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        _fail(source, f"not a nas-mnist prior (expected \"format\": \"{FORMAT}\"); build one "
                      f"with benchmarks/build_prior.py")
    configs, curves = [], []
    for i, c in enumerate(doc.get("configs") or []):
        where = f"configs[{i}]"
        if not isinstance(c, dict):
            _fail(source, f"{where} must be an object")
        try:
            arch = ArchConfig.from_dict(c.get("arch"))
            recipe = Recipe.from_dict(c.get("recipe") or {})
        except (SpecError, ValueError, TypeError, AttributeError) as err:
            _fail(source, f"{where}: {err}")
        seeds = c.get("seeds")
        scores = c.get("scores")
        if (not isinstance(seeds, list) or not isinstance(scores, list) or not seeds
                or len(seeds) != len(scores) or len(set(map(str, seeds))) != len(seeds)):
            _fail(source, f"{where}: seeds and scores must be non-empty lists of one length, "
                          f"seeds distinct")
        params = _int(c.get("params"), source, f"{where}.params", 1)
        if params != arch.n_params():
            _fail(source, f"{where}.params is {params}, but its arch has {arch.n_params()}")
        checksum = c.get("data_checksum")
        if not isinstance(checksum, str):
            _fail(source, f"{where}.data_checksum must be a string")
        configs.append(PriorConfig(
            str(c.get("study", "?")), _int(c.get("trial", -1), source, f"{where}.trial", -1),
            arch, recipe, params,
            tuple(_accuracy(s, source, f"{where}.scores") for s in scores),
            tuple(_int(s, source, f"{where}.seeds") for s in seeds), checksum,
            _optional_str(c, "measured", source, where)))
    for i, c in enumerate(doc.get("curves") or []):
        where = f"curves[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("accs"), list) or not c["accs"]:
            _fail(source, f"{where} must be an object with a non-empty list 'accs'")
        epochs = _int(c.get("epochs"), source, f"{where}.epochs", 1)
        if len(c["accs"]) > epochs:
            _fail(source, f"{where} has more accuracies than its {epochs} epochs")
        curves.append(PriorCurve(
            str(c.get("study", "?")), _int(c.get("trial", -1), source, f"{where}.trial", -1),
            _int(c.get("budget"), source, f"{where}.budget", 1), epochs, bool(c.get("ema")),
            _int(c.get("params"), source, f"{where}.params", 1),
            tuple(_accuracy(a, source, f"{where}.accs") for a in c["accs"]),
            str(c.get("data_checksum")), _optional_str(c, "space_digest", source, where),
            _optional_str(c, "trainer", source, where)))
    _check_runs_match_curves(configs, curves, source)
    return Prior(source, tuple(configs), tuple(curves), tuple(doc.get("built_from") or ()),
                 _public_designs(doc, source))


def _public_designs(doc: dict, source) -> tuple[PublicDesign, ...]:
    """The prior's public designs re-trained here, validated."""
    public = []
    for i, d in enumerate(doc.get("public") or []):
        where = f"public[{i}]"
        if (not isinstance(d, dict) or not isinstance(d.get("seed_scores"), list)
                or not d["seed_scores"] or d.get("recipe") not in ("own", "tool")):
            _fail(source, f"{where} must be an object with a non-empty list 'seed_scores' and "
                          f"a recipe 'own' or 'tool'")
        public.append(PublicDesign(
            str(d.get("name")), str(d.get("source")), _int(d.get("params"), source,
                                                           f"{where}.params", 1),
            d["recipe"], tuple(_accuracy(s, source, f"{where}.seed_scores")
                               for s in d["seed_scores"]),
            str(d.get("data_checksum")), str(d.get("file"))))
    return tuple(public)


def _check_runs_match_curves(configs: list[PriorConfig], curves: list[PriorCurve],
                             source) -> None:
    """A configuration's seed-0 score is the min or mean of the last epochs of its own curve
    (same study and trial, trained to the end), so it lies within that curve's range: a
    score outside it is a made-up or mismatched run, refused."""
    full = {(c.study, c.trial): c.accs for c in curves if len(c.accs) == c.epochs}
    for i, c in enumerate(configs):
        accs = full.get((c.study, c.trial))
        if accs is None or 0 not in c.seeds:
            continue
        score = c.scores[c.seeds.index(0)]
        if not min(accs) - 0.005 <= score <= max(accs) + 0.005:
            _fail(source, f"configs[{i}] ({c.study} trial {c.trial}): its seed-0 score "
                          f"{score} is outside its own curve's range [{min(accs)}, "
                          f"{max(accs)}]")


def load_prior(path: str | Path = PACKAGED_PRIOR) -> Prior:
    from nas_mnist.files import FileReadError, read_text_bounded
    path = Path(path)
    if str(path) in ("", "."):
        raise PriorError("a prior file name is empty")
    try:
        doc = json.loads(read_text_bounded(path, MAX_PRIOR_BYTES, "prior"))
    except FileReadError as err:
        raise PriorError(str(err)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise PriorError(f"prior {path} is not valid JSON: {err}") from None
    return parse_prior(doc, str(path))


def pick_warm(configs: list[PriorConfig], limits: Limits, *, data_checksum: str | None,
              macs_of=None, k: int = WARM_START_K) -> tuple[list[PriorConfig], list[str]]:
    """The best `k` distinct architectures that fit the limits and were made on this data,
    best first; and one line per source skipped for its data."""
    notes, seen, picked = [], set(), []
    other_data = {c.study for c in configs if c.data_checksum != data_checksum}
    if other_data:
        notes.append(f"skipped {len(other_data)} prior stud{'y' if len(other_data) == 1 else 'ies'}"
                     f" made on other data ({', '.join(sorted(other_data))})")
    for c in sorted((c for c in configs if c.data_checksum == data_checksum),
                    key=PriorConfig.rank_key):
        key = c.arch.describe()  # distinct structures (a dropout rate apart is the same one)
        if key in seen:
            continue
        macs = macs_of(c.arch) if (macs_of and limits.max_macs is not None) else None
        if limits.refusal_of(c.arch, macs) is None:
            seen.add(key)
            picked.append(c)
        if len(picked) == k:
            break
    return picked, notes


def local_configs(folder: str | Path, *, exclude: str | None = None) -> list[PriorConfig]:
    """The completed trials of the nas-mnist studies in a folder of SQLite files (`studies/`),
    each as a one-seed configuration: what this machine has already found."""
    import optuna
    from nas_mnist.searcher.record import StudyMeta, records
    from nas_mnist.searcher.storage import open_storage
    out = []
    for db in sorted(Path(folder).glob("*.db")):
        url = f"sqlite:///{db}"
        try:
            storage = open_storage(url, create=False, read_only=True)
            for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
                if summary.study_name == exclude:
                    continue
                study = optuna.load_study(study_name=summary.study_name, storage=storage)
                meta = StudyMeta.from_study(study)
                if meta is None or meta.data_checksum is None:
                    continue
                trials = study.get_trials(deepcopy=False)
                for t, r in zip(trials, records(study)):
                    if r.kind != "complete" or not r.arch or r.value is None:
                        continue
                    try:  # the trial's own seed and the search's confirmation runs
                        out.append(PriorConfig(
                            summary.study_name, r.number, r.arch_config,
                            r.recipe_config, r.n_params or 0,
                            tuple(float(v) for v in r.scores),
                            (r.seed, *(int(k) for k in r.more_seeds)), meta.data_checksum,
                            f"{r.device or 'an unrecorded device'}"
                            + (f", {t.datetime_complete:%Y-%m-%d}" if t.datetime_complete
                               else "")))
                    except (SpecError, ValueError, TypeError):
                        continue
        except Exception:  # a file that is not a study, locked or corrupt: not a source
            continue
    return out


def describe_rung_prior(prior: Prior, *, data_checksum: str | None, epochs: int,
                        budget: int, space_digest: str | None = None,
                        trainer: str | None = None) -> str:
    """One line for the search header: which earlier curves set the first rungs."""
    key = dict(data_checksum=data_checksum, epochs=epochs, budget=budget,
               space_digest=space_digest, trainer=trainer)
    ema, plain = prior.curves_for(**key, ema=True), prior.curves_for(**key, ema=False)
    if not ema and not plain:
        return ("no earlier curves for this data, space, trainer, run length and budget: "
                "the rungs rank each trial among the study's own curves of networks no larger "
                "(from 2 at a rung, only a trial with twice the best one's error stops until "
                "there are 5; at 3x the best error of any size a trial stops)")
    studies = sorted({c.study for c in ema + plain})
    return (f"rungs rank each trial among the study's own curves and {len(ema)} EMA / "
            f"{len(plain)} plain curves of {', '.join(studies)} (the packaged prior; only "
            f"networks no larger than the trial and at least half its size judge it, earlier "
            f"curves weighed down as the study's own grow)")
