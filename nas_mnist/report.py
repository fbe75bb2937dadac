"""Report figures (plotly, self-contained HTML that renders offline) and a Markdown summary.

plotly is imported here only. PNG copies are written when kaleido can find a Chromium.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna
import plotly.graph_objects as go

from nas_mnist.results import feasible, pareto_front
from nas_mnist.storage import trial_kind

log = logging.getLogger(__name__)
STYLE = {"complete": ("#1f77b4", "circle"), "early_stopped": ("#aaaaaa", "circle-open"),
         "over_budget": ("#d62728", "x")}
ZOOM_POINTS = 2.0  # the y axis of a Pareto plot spans this many points below the best


def _points(study: optuna.Study, kind: str, x_key: str) -> tuple[list, list, list]:
    xs, ys, text = [], [], []
    for t in study.get_trials(deepcopy=False):
        if trial_kind(t) != kind or x_key not in t.user_attrs:
            continue
        accs = t.user_attrs.get("acc") or []
        if kind == "complete":
            if t not in feasible(study):
                continue
            y = t.values[0]
        elif kind == "early_stopped":
            y = accs[-1] if accs else None  # accuracy when it was stopped
        else:
            y = None
        xs.append(t.user_attrs[x_key])
        ys.append(y)
        text.append(f"trial {t.number}")
    return xs, ys, text


def pareto_figure(study: optuna.Study, x_key: str) -> go.Figure:
    """Accuracy vs `params` or `macs`: feasible, early-stopped and over-budget trials apart."""
    meta = study.user_attrs.get("nas_mnist", {})
    split = meta.get("eval_split", "test")
    y_title = f"{meta.get('objective', 'min')} of last {meta.get('last_n', 3)} epochs, {split} acc %"
    x_title = "parameters" if x_key == "params" else "MACs (fvcore, forward, 1 image)"
    fig = go.Figure()
    floor, hidden = None, 0
    xs, ys, text = _points(study, "complete", x_key)
    if ys:
        # Zoom on the top ZOOM_POINTS points: tiny networks far below would flatten the front.
        floor = max(min(ys), max(ys) - ZOOM_POINTS)
        hidden = sum(y < floor for y in ys)
        fig.update_yaxes(range=[floor - 0.1, min(100.0, max(ys) + 0.2)])
    fig.add_trace(go.Scatter(x=xs, y=ys, text=text, mode="markers", name="feasible (complete)",
                             marker=dict(color=STYLE["complete"][0], size=9)))
    front = pareto_front(study)
    fig.add_trace(go.Scatter(x=[t.user_attrs[x_key] for t in front],
                             y=[t.values[0] for t in front],
                             text=[f"trial {t.number}" for t in front],
                             mode="lines+markers", name="Pareto front", line=dict(shape="hv"),
                             marker=dict(color="#ff7f0e", size=11, symbol="star")))
    xs, ys, text = _points(study, "early_stopped", x_key)
    fig.add_trace(go.Scatter(x=xs, y=ys, text=text, mode="markers",
                             name="early-stopped (acc when stopped)",
                             marker=dict(color=STYLE["early_stopped"][0], size=8,
                                         symbol=STYLE["early_stopped"][1])))
    if x_key == "params":
        xs, _, text = _points(study, "over_budget", x_key)
        y_over = [floor if floor is not None else 0.0] * len(xs)
        fig.add_trace(go.Scatter(x=xs, y=y_over, text=text, mode="markers",
                                 name="over budget (never trained)",
                                 marker=dict(color=STYLE["over_budget"][0], size=8,
                                             symbol=STYLE["over_budget"][1])))
        if meta.get("budget"):
            fig.add_vline(x=meta["budget"], line_dash="dash", annotation_text="budget")
    title = f"Pareto front of study {study.study_name}: accuracy vs {x_title}"
    if hidden:
        title += (f"<br><sup>{hidden} trial(s) below {floor:.2f} % are off the chart "
                  f"(Autoscale in pareto.html shows them)</sup>")
    fig.update_layout(title=title,
                      xaxis_title=x_title, yaxis_title=y_title, template="plotly_white")
    return fig


def curves_figure(study: optuna.Study, top_k: int = 5) -> go.Figure:
    split = study.user_attrs.get("nas_mnist", {}).get("eval_split", "test")
    fig = go.Figure()
    for t in feasible(study)[:top_k]:
        accs = t.user_attrs["acc"]
        fig.add_trace(go.Scatter(x=list(range(1, len(accs) + 1)), y=accs, mode="lines+markers",
                                 name=f"trial {t.number} ({t.user_attrs['params']:,} p)"))
    fig.update_layout(title=f"Per-epoch {split} accuracy of the top {top_k} trials",
                      xaxis_title="epoch", yaxis_title=f"{split} accuracy %",
                      template="plotly_white")
    return fig


def optuna_figures(study: optuna.Study) -> dict[str, go.Figure]:
    """Optimisation history and parameter importances for the accuracy objective."""
    from optuna.visualization import plot_optimization_history, plot_param_importances
    target = dict(target=lambda t: t.values[0], target_name="accuracy %")
    figures = {"history": plot_optimization_history(study, **target)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # PED-ANOVA's note on low targets
            # Optuna's default evaluator (PED-ANOVA) rates what leads to *low* targets: negate.
            figures["importances"] = plot_param_importances(
                study, target=lambda t: -t.values[0], target_name="accuracy % (negated)")
    except (RuntimeError, ValueError, ZeroDivisionError) as err:  # too few complete trials
        log.warning("parameter importances skipped: %s", err)
    return figures


PAGES = {"pareto": ("pareto_params", "pareto_macs"), "details": ("curves", "history", "importances")}


def build_figures(study: optuna.Study) -> dict[str, go.Figure]:
    return {"pareto_params": pareto_figure(study, "params"),
            "pareto_macs": pareto_figure(study, "macs"),
            "curves": curves_figure(study), **optuna_figures(study)}


def write_page(figures: list[go.Figure], path: Path, title: str) -> None:
    """One self-contained HTML page (plotly.js embedded once) holding several figures."""
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0))
             for i, fig in enumerate(figures)]
    path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
                    f"</head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_figures(study: optuna.Study, out_dir: Path, *, png: bool = True) -> list[Path]:
    """pareto.html (accuracy vs params and vs MACs) and details.html (curves, history,
    importances), each self-contained; PNG copies of every figure when kaleido works."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = build_figures(study)
    written = []
    for page, names in PAGES.items():
        path = out_dir / f"{page}.html"
        write_page([figures[n] for n in names if n in figures], path,
                   f"{study.study_name}: {page}")
        written.append(path)
    if png:
        for name, fig in figures.items():
            written.extend(_try_png(fig, out_dir / f"{name}.png"))
    return written


def _try_png(fig: go.Figure, path: Path) -> list[Path]:
    try:
        fig.write_image(path)
        return [path]
    except Exception as err:  # no kaleido or no Chromium: PNGs are optional
        log.info("no PNG for %s: %s", path.name, err)
        return []
