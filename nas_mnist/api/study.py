"""A study and its winners: ranked, plotted and exported from what its storage holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # names for the annotations only: importing nas_mnist stays light
    from nas_mnist.spec.arch import ArchConfig
    from nas_mnist.spec.recipe import Recipe

from nas_mnist.api.errors import ApiError

def load_study(study: str, storage: str | None = None) -> "Study":
    """Open a stored study (read-only), e.g. to rank, plot or export it."""
    from nas_mnist.searcher.storage import default_storage, load_study as open_study
    url = storage or default_storage(study)
    return Study(open_study(study, url), url)


@dataclass
class Winner:
    """One trained network of a study: its config, recipe, score and sizes."""

    study: str
    trial: int
    arch: "ArchConfig"
    recipe: "Recipe"
    score: float
    n_params: int
    macs: int
    activations: int
    peak_ram_int8: int
    origin: str | None = None  # "warm", "enqueued" or None (found by the sampler)
    storage: str = ""
    weights: str | None = field(default=None, repr=False)  # artifact id
    normalisation: tuple[float, float] | None = field(default=None, repr=False)

    def model(self, artifacts: str | None = None):
        """The network as an `nn.Module` with the weights the search stored (input: raw [0, 1]
        images, N x 1 x 28 x 28; output: logits), in eval mode."""
        from nas_mnist.results.models import deployable
        from nas_mnist.searcher.storage import default_artifacts
        folder = Path(artifacts or default_artifacts(self.storage, self.study))
        if not self.weights or not (folder / self.weights).is_file():
            raise ApiError(f"trial {self.trial} of study {self.study!r} kept no weights in "
                           f"{folder}: study.export(trial={self.trial}) re-trains it")
        mean, std = self.normalisation
        return deployable(self.arch, folder / self.weights, mean, std)


def _winner(study, meta, r, url: str) -> Winner:
    from nas_mnist.spec.footprint import footprint
    arch = r.arch_config
    f = footprint(arch)
    return Winner(study.study_name, r.number, arch, r.recipe_config,
                  r.mean_score,
                  r.n_params, r.macs or 0, f.activations, f.peak, r.origin, url, r.weights,
                  (r.data_mean or meta.data_mean, r.data_std or meta.data_std))


class Leaderboard(list):
    """Leaderboard rows (results.ranking.Row) that show as a table in a notebook."""

    label = "score %"
    what = "architecture"  # or "recipe": what each row describes (a recipe study's rows)

    @property
    def confirmed(self) -> bool:
        """Whether any row is a mean over several training seeds (then seeds and worst show)."""
        return any(r.seeds > 1 for r in self)

    def _repr_html_(self) -> str:
        seeds = ("seeds", "worst %") if self.confirmed else ()
        head = "".join(f"<th>{h}</th>" for h in ("rank", "trial", "params", "MACs",
                                                 "activations", "peak RAM B (int8)",
                                                 self.label, *seeds, self.what))
        body = "".join(
            f"<tr><td>{r.rank}</td><td>{r.trial_label}</td><td>{r.n_params:,}</td>"
            f"<td>{r.macs:,}</td><td>{r.activations:,}</td><td>{r.peak:,}</td>"
            f"<td>{r.score:.2f}</td>"
            + (f"<td>{r.seeds}</td><td>{r.worst:.2f}</td>" if self.confirmed else "")
            + f"<td><code>{r.describe}</code></td></tr>" for r in self)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        w = max(5, *(len(r.trial_label) for r in self)) if self else 5
        seeds = f" {'seeds':>5} {'worst':>6}" if self.confirmed else ""
        s = max(19, len(self.label))
        lines = [f"{'rank':>4} {'trial':>{w}} {'params':>7} {'MACs':>10} {'act.':>8} "
                 f"{'RAM B':>7} {self.label:>{s}}{seeds}  {self.what}"]
        lines += [f"{r.rank:>4} {r.trial_label:>{w}} {r.n_params:>7,} {r.macs:>10,} "
                  f"{r.activations:>8,} {r.peak:>7,} {r.score:>{s}.2f}"
                  + (f" {r.seeds:>5} {r.worst:>6.2f}" if self.confirmed else "")
                  + f"  {r.describe}" for r in self]
        return "\n".join(lines)


class Study:
    """A nas-mnist study: ranked, plotted and exported from what its storage holds."""

    def __init__(self, optuna_study, storage: str):
        from nas_mnist.results.ranking import study_meta
        self.optuna = optuna_study
        self.name = optuna_study.study_name
        self.storage = storage
        self.meta = study_meta(optuna_study)

    def view(self):
        """The study as its storage holds it now, read once (results.view.StudyView): each
        method below reads one, so a search that goes on is seen as it goes."""
        from nas_mnist.results.view import StudyView
        return StudyView.read(self.optuna)

    def __repr__(self) -> str:
        return f"<nas_mnist.Study {self.name!r}: {len(self.optuna.trials)} trials, budget " \
               f"{self.meta.budget:,}>"

    @property
    def best(self) -> Winner:
        """The best feasible complete trial (highest score; ties: fewer parameters)."""
        ranked = self.view().feasible
        if not ranked:
            raise ApiError(f"study {self.name!r} has no complete feasible trial yet")
        return _winner(self.optuna, self.meta, ranked[0], self.storage)

    def counts(self) -> dict[str, int]:
        """Trials per kind (complete, early_stopped, over_budget, under_floor, ...), in the
        order the leaderboard's header shows them, kinds with none left out."""
        from nas_mnist.searcher.record import KIND_ORDER, count_kinds
        kinds = count_kinds(self.optuna)
        return {kind: kinds[kind] for kind in KIND_ORDER if kinds.get(kind)}

    def leaderboard(self, k: int = 10) -> Leaderboard:
        from nas_mnist.results.ranking import leaderboard
        rows = Leaderboard(leaderboard(self.view(), k))
        rows.label = self.meta.label
        if self.meta.arch is not None:
            rows.what = "recipe"
        if rows.confirmed:  # a mean over seeds: 'mean min-last-3 test %'
            rows.label = "mean " + rows.label
        return rows

    def pareto(self, cost: str = "params") -> list[Winner]:
        """Trials no other beats on both score and `cost` ("params", "macs" or "ram": peak
        RAM at int8), cheapest first."""
        from nas_mnist.results.ranking import pareto_front
        key = _cost_key(cost)
        return [_winner(self.optuna, self.meta, r, self.storage)
                for r in pareto_front(self.view().feasible, key)]

    def trials_dataframe(self):
        """One row per trial (pandas, which nas-mnist does not require: `pip install pandas`)."""
        try:
            import pandas as pd
        except ImportError:
            raise ApiError("trials_dataframe needs pandas: pip install pandas") from None
        rows = []
        for r in self.view().records:
            rows.append({"trial": r.number, "kind": r.kind, "score": r.value,
                         "params": r.n_params, "macs": r.macs, "activations": r.activations,
                         "peak_ram_int8": r.peak, "epochs": len(r.accs), "seconds": r.seconds,
                         "origin": r.origin,
                         "architecture": r.arch_config.describe() if r.arch
                         else None,
                         **{f"recipe.{k}": v for k, v in (r.recipe or {}).items()}})
        return pd.DataFrame(rows).set_index("trial")

    def pareto_plot(self, cost: str = "params"):
        """Accuracy against `cost` ("params", "macs" or "ram"), a plotly Figure."""
        from nas_mnist.results.report import pareto_figure
        return pareto_figure(self.view(), _cost_key(cost))

    def curves_plot(self, top_k: int = 5):
        from nas_mnist.results.report import curves_figure
        return curves_figure(self.view(), top_k)

    def history_plot(self):
        from nas_mnist.results.report import best_over_time_figure
        return best_over_time_figure(self.view())

    def export(self, out: str | None = None, *, formats: Sequence[str] = (),
               trial: int | None = None, pareto: bool = False, artifacts: str | None = None,
               data_dir: str | None = None, device: str = "auto", threads: int | None = None,
               calibration_images: int | None = None,
               log: Callable[[str], None] | None = print) -> list[Path]:
        """Winner files (JSON, weights, optional ONNX / int8 ONNX / TorchScript), as
        `nas-mnist export`."""
        from nas_mnist.api.results import export
        return export(study=self.name, storage=self.storage, out=out, format=formats,
                      trial=trial, pareto=pareto, artifacts=artifacts, data_dir=data_dir,
                      device=device, threads=threads, calibration_images=calibration_images,
                      log=log)

    def report(self, out: str | None = None, *, top: int = 10, png: bool = True) -> list[Path]:
        """Plots and the Markdown summary, as `nas-mnist report` (without --seeds)."""
        from nas_mnist.api.results import report
        return report(study=self.name, storage=self.storage, out=out, top=top, no_png=not png)

    def _repr_html_(self) -> str:
        from html import escape
        head = (f"<p><b>study {escape(self.name)}</b>: budget {self.meta.budget:,}, space "
                f"{escape(self.meta.space)}, {len(self.optuna.trials)} trials</p>")
        return head + self.leaderboard()._repr_html_()


def _cost_key(cost: str) -> str:
    key = {"params": "n_params", "macs": "macs", "ram": "peak"}.get(cost)
    if key is None:
        raise ApiError(f"cost must be 'params', 'macs' or 'ram', got {cost!r}")
    return key


