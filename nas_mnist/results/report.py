"""Report figures (plotly, self-contained HTML that renders offline) and a Markdown summary.

plotly is imported here only. PNG copies are written when kaleido can find a Chromium (png.py).
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import optuna
import plotly.colors
import plotly.graph_objects as go

from nas_mnist.files import write_text
from nas_mnist.results.png import write_pngs
from nas_mnist.results.ranking import cost_of, pareto_front
from nas_mnist.results.view import StudyView, view_of

log = logging.getLogger(__name__)
STYLE = {"complete": ("#1f77b4", "circle"), "early_stopped": ("#aaaaaa", "circle-open"),
         "over_budget": ("#d62728", "x")}
ZOOM_POINTS = 2.0  # the y axis of a Pareto plot spans at least this many points below the best
ZOOM_KEEP = 0.8  # ... and keeps at least this share of the complete trials in view
TOP_IMPORTANCES = 10  # parameters in the importance chart, each bar labelled
FIGURE_HEIGHT = 500  # plotly's default, in pixels
LEGEND_ROW_PX, LEGEND_MARGIN_PX = 20, 200  # a legend row at plotly's font; title and axis


def _points(view: StudyView, kind: str, x_key: str) -> tuple[list, list, list]:
    xs, ys, text = [], [], []
    ok = {r.number for r in view.feasible}
    for r in view.records:
        if r.kind != kind:
            continue
        x = cost_of(r, x_key)
        if x is None:
            continue
        if kind == "complete":
            if r.number not in ok:
                continue
            y = r.value
        elif kind == "early_stopped":
            y = r.accs[-1] if r.accs else None  # accuracy when it was stopped
        else:
            y = None
        xs.append(x)
        ys.append(y)
        text.append(f"trial {r.number}")
    return xs, ys, text


def _add_limits(fig: go.Figure, view: StudyView, x_key: str, y: float) -> None:
    """The limits on this axis as lines, and the samples each refused (never trained) at the
    chart's floor `y`."""
    meta = view.meta

    def refused(kind: str, name: str, color: str, symbol: str) -> None:
        xs, _, text = _points(view, kind, x_key)
        fig.add_trace(go.Scatter(x=xs, y=[y] * len(xs), text=text, mode="markers", name=name,
                                 marker=dict(color=color, size=8, symbol=symbol)))

    if x_key == "n_params":
        refused("over_budget", "over budget (never trained)", *STYLE["over_budget"])
        fig.add_vline(x=meta.budget, line_dash="dash", annotation_text="budget")
        if meta.min_params:
            refused("under_floor", "under the size floor (never trained)", "#9467bd", "x")
            fig.add_vline(x=meta.min_params, line_dash="dot", annotation_text="size floor")
    elif x_key == "macs" and meta.max_macs:
        fig.add_vline(x=meta.max_macs, line_dash="dash", annotation_text="MACs limit")
    elif x_key == "peak" and meta.max_ram:
        refused("over_ram", "over the RAM limit (never trained)", *STYLE["over_budget"])
        fig.add_vline(x=meta.max_ram, line_dash="dash", annotation_text="RAM limit")


def pareto_figure(study: StudyView | optuna.Study, x_key: str) -> go.Figure:
    """Accuracy vs `n_params` or `macs`: feasible, early-stopped and over-budget trials apart."""
    view = view_of(study)
    meta = view.meta
    y_title = f"{meta.objective} of last {meta.last_n} epochs, {meta.eval_split} acc %"
    x_title = {"n_params": "parameters", "macs": "MACs (fvcore, forward, 1 image)",
               "peak": "peak activation RAM at int8, bytes"}[x_key]
    fig = go.Figure()
    floor, hidden = None, 0
    xs, ys, text = _points(view, "complete", x_key)
    if ys:
        # Zoom in: tiny networks far below would flatten the front. The axis spans at least
        # ZOOM_POINTS below the best and keeps at least ZOOM_KEEP of the trials in view.
        ranked = sorted(ys, reverse=True)
        kept = ranked[min(len(ranked) - 1, math.ceil(ZOOM_KEEP * len(ranked)) - 1)]
        floor = max(min(ys), min(max(ys) - ZOOM_POINTS, kept))
        hidden = sum(y < floor for y in ys)
        fig.update_yaxes(range=[floor - 0.1, min(100.0, max(ys) + 0.2)])
    fig.add_trace(go.Scatter(x=xs, y=ys, text=text, mode="markers", name="feasible (complete)",
                             marker=dict(color=STYLE["complete"][0], size=9)))
    front = pareto_front(view.feasible, cost=x_key)
    fig.add_trace(go.Scatter(x=[cost_of(r, x_key) for r in front],
                             y=[r.value for r in front],
                             text=[f"trial {r.number}" for r in front],
                             mode="lines+markers", name="Pareto front", line=dict(shape="hv"),
                             marker=dict(color="#ff7f0e", size=11, symbol="star")))
    xs, ys, text = _points(view, "early_stopped", x_key)
    hidden_stopped = 0 if floor is None else sum(y < floor for y in ys)
    fig.add_trace(go.Scatter(x=xs, y=ys, text=text, mode="markers",
                             name="early-stopped (acc when stopped)",
                             marker=dict(color=STYLE["early_stopped"][0], size=8,
                                         symbol=STYLE["early_stopped"][1])))
    _add_limits(fig, view, x_key, 0.0 if floor is None else floor)
    title = f"Pareto front of study {view.name}: accuracy vs {x_title}"
    off = [f"{n} {kind}trial(s)" for n, kind in ((hidden, ""), (hidden_stopped, "early-stopped "))
           if n]
    if off:
        title += (f"<br><sup>{' and '.join(off)} below {floor:.2f} % are off the chart "
                  f"(Autoscale in pareto.html shows them)</sup>")
    fig.update_layout(title=title,
                      xaxis_title=x_title, yaxis_title=y_title, template="plotly_white")
    return fig


def curves_figure(study: StudyView | optuna.Study, top_k: int = 5) -> go.Figure:
    view = view_of(study)
    split = view.meta.eval_split
    fig = go.Figure()
    for r in view.feasible[:top_k]:
        fig.add_trace(go.Scatter(x=list(range(1, len(r.accs) + 1)), y=r.accs,
                                 mode="lines+markers", name=f"trial {r.number} ({r.n_params:,} p)"))
    fig.update_layout(title=f"Per-epoch {split} accuracy of the top {top_k} trials",
                      xaxis_title="epoch", yaxis_title=f"{split} accuracy %",
                      template="plotly_white")
    fig.update_xaxes(dtick=1)  # epochs are whole numbers
    return fig


def active_minutes(spans: list[tuple[float, float]]) -> list[float]:
    """For each (start, end) span in seconds, the minutes during which some span had run by its
    end: wall time with the gaps between sittings of a resumed study left out."""
    out = []
    for _, end in spans:
        covered, reach = 0.0, float("-inf")
        for s, e in sorted((s, min(e, end)) for s, e in spans if s < end):
            if e > reach:
                covered += e - max(s, reach)
                reach = e
        out.append(covered / 60)
    return out


def best_over_time_figure(study: StudyView | optuna.Study) -> go.Figure:
    """The best score so far against the study's running time (gaps between sittings cut)."""
    view = view_of(study)
    meta = view.meta
    ok = {r.number: r for r in view.feasible}
    done = sorted(view.times.items(), key=lambda item: item[1][1])  # by completion
    spans = [span for _, span in done]
    xs, ys, text, best = [], [], [], None
    minutes_at = active_minutes(spans)
    for (number, _), minutes in zip(done, minutes_at):
        if number in ok and (best is None or ok[number].value > best):
            best = ok[number].value
            xs.append(minutes)
            ys.append(best)
            origin = ok[number].origin
            text.append(f"trial {number}" + (f" ({origin})" if origin else ""))
    fig = go.Figure(go.Scatter(x=xs, y=ys, text=text, mode="lines+markers+text",
                               line_shape="hv", textposition="bottom right"))
    if xs and minutes_at[-1] > xs[-1]:  # carry the best score on to the end of the study
        fig.add_trace(go.Scatter(x=[xs[-1], minutes_at[-1]], y=[ys[-1], ys[-1]], mode="lines",
                                 line=dict(dash="dot", color="#1f77b4")))
    fig.update_layout(title=f"Best score so far ({meta.label}) over the search's "
                            f"running time", showlegend=False, template="plotly_white",
                      xaxis_title="minutes with a trial running (all workers, sittings joined)",
                      yaxis_title=f"{meta.eval_split} accuracy %")
    # from zero, so the time to the first trained network shows; room for the last label
    fig.update_xaxes(range=[0, 1.15 * max(minutes_at or [1])])
    return fig


def optuna_figures(study: optuna.Study) -> dict[str, go.Figure]:
    """Optimisation history and parameter importances for the accuracy objective (Optuna's
    own figures: they read the live study)."""
    from optuna.visualization import plot_optimization_history, plot_param_importances
    target = dict(target=lambda t: t.values[0], target_name="accuracy %")
    figures = {"history": plot_optimization_history(study, **target)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # PED-ANOVA's note on low targets
            # Optuna's default evaluator (PED-ANOVA) rates what leads to *low* targets: negate.
            negated = dict(target=lambda t: -t.values[0])
            ranked = optuna.importance.get_param_importances(study, **negated)
            if not ranked:  # e.g. only warm-started trials complete: no sampled parameter
                raise ValueError("no sampled parameter to rank")
            top = list(ranked)[:TOP_IMPORTANCES]
            fig = plot_param_importances(study, params=top, target_name="accuracy % (negated)",
                                         **negated)
        fig.update_yaxes(tickmode="linear", automargin=True)  # a label on every bar
        fig.update_layout(height=160 + 32 * len(top),
                          title=f"Top {len(top)} of {len(ranked)} parameter importances "
                                f"for the score")
        figures["importances"] = fig
    except (RuntimeError, ValueError, ZeroDivisionError) as err:  # too few complete trials
        log.info("parameter importances skipped: %s", err)
    return figures


PAGES = {"pareto": ("pareto_params", "pareto_macs", "pareto_ram", "frontier"),
         "details": ("best_over_time", "curves", "history", "importances")}


def build_figures(study: StudyView | optuna.Study) -> dict[str, go.Figure]:
    view = view_of(study)
    return {"pareto_params": pareto_figure(view, "n_params"),
            "pareto_macs": pareto_figure(view, "macs"),
            "pareto_ram": pareto_figure(view, "peak"),
            "frontier": study_frontier_figure(view),
            "curves": curves_figure(view), "best_over_time": best_over_time_figure(view),
            **optuna_figures(view.study)}


def write_page(figures: list[go.Figure], path: Path, title: str) -> None:
    """One self-contained HTML page (plotly.js embedded once) holding several figures."""
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0))
             for i, fig in enumerate(figures)]
    write_text(path, f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
               f"</head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_figures(study: StudyView | optuna.Study, out_dir: Path, *,
                  png: bool = True) -> tuple[list[Path], str | None]:
    """pareto.html (accuracy vs params and vs MACs) and details.html (curves, history,
    importances), each self-contained; PNG copies of every figure when kaleido works.
    Returns the files written and, when PNGs were wanted but could not be made, why."""
    out_dir.mkdir(parents=True, exist_ok=True)
    view = view_of(study)
    figures = build_figures(view)
    written = []
    for page, names in PAGES.items():
        path = out_dir / f"{page}.html"
        write_page([figures[n] for n in names if n in figures], path,
                   f"{view.name}: {page}")
        written.append(path)
    for name in {n for names in PAGES.values() for n in names} - set(figures):
        (out_dir / f"{name}.png").unlink(missing_ok=True)  # an earlier report's, not drawn now
    note = None
    if png:
        pngs = [out_dir / f"{name}.png" for name in figures]
        note = write_pngs(list(figures.values()), pngs)
        written += [] if note else pngs
    return written, note


def write_report(study: StudyView | optuna.Study, out: Path, *, top: int = 10,
                 png: bool = True,
                 seed_runs: list | None = None) -> tuple[list[Path], str | None]:
    """The report folder: figures (HTML, PNG where possible) and summary.md with the seed
    table of `seed_runs` (None: none), all from one read of the study. Returns the files
    written and a note on PNGs."""
    from nas_mnist.results.export import ExportError
    from nas_mnist.results.summary import summary_markdown
    view = view_of(study)
    if not view.feasible:
        raise ExportError(f"study {view.name!r} has no complete feasible trial yet: "
                          f"nothing to report")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written, png_note = write_figures(view, out, png=png)
    md = out / "summary.md"
    text = summary_markdown(view, top_k=top, seed_runs=seed_runs)
    write_text(md, text)
    return [*written, md], png_note


def _front_trace(points: list[dict], name: str, **style) -> go.Scatter:
    """A front, smallest first: the mean of seeds, the worst seed as the lower error bar."""
    points = sorted(points, key=lambda p: p["params"])
    return go.Scatter(
        x=[p["params"] for p in points], y=[p["mean"] for p in points], mode="lines+markers",
        name=name, text=[p["name"] for p in points],
        error_y=dict(type="data", symmetric=False, array=[0] * len(points),
                     arrayminus=[p["mean"] - p["worst"] for p in points]), **style)


def _add_public(fig: go.Figure, public: list[dict]) -> None:
    """One legend row per design and recipe: text labels of designs 1,000 parameters apart
    collided; a design keeps its colour, its recipe its symbol."""
    designs = sorted({p["name"].split()[0] for p in public})
    palette = plotly.colors.qualitative.Dark24
    for p in sorted(public, key=lambda p: (p["params"], p["name"], p["recipe"])):
        own = p["recipe"] == "own"
        fig.add_trace(go.Scatter(
            x=[p["params"]], y=[p["mean"]], mode="markers",
            marker=dict(symbol="diamond" if own else "x", size=11,
                        color=palette[designs.index(p["name"].split()[0]) % len(palette)]),
            name=f"{p['name']} ({p['params']:,} p), "
                 + ("its own recipe" if own else "the tool's recipe")))


def frontier_figure(doc: dict):
    """Mean test score against parameters: the front (the worst seed as the lower error bar)
    and the public designs re-trained here as markers of their own (`studies/frontier.json`)."""
    fig = go.Figure()
    fig.add_trace(_front_trace([p for p in doc["points"] if "max_ram" not in p],
                               "nas-mnist front (mean of seeds; bar: worst seed)"))
    for p in (p for p in doc["points"] if "max_ram" in p):  # a RAM class: a marker of its own
        fig.add_trace(go.Scatter(
            x=[p["params"]], y=[p["mean"]], mode="markers+text", text=[p["name"]],
            textposition="bottom center", marker=dict(symbol="star", size=13, color="goldenrod"),
            name=f"best under {p['max_ram']:,} B of int8 activations",
            error_y=dict(type="data", symmetric=False, array=[0],
                         arrayminus=[p["mean"] - p["worst"]])))
    _add_public(fig, doc.get("public", []))
    fig.update_layout(title="Best network per size (MNIST, 15 epochs, min of the last 3)",
                      xaxis_title="parameters (log scale)", xaxis_type="log",
                      yaxis_title="test accuracy % (mean of seeds)", template="plotly_white")
    return fig


def _add_study(fig: go.Figure, single: list, confirmed: list, several: int) -> None:
    """A study's networks: those run on fewer than `several` seeds as open markers, the rest
    with the worst seed as the lower error bar."""
    fig.add_trace(go.Scatter(
        x=[p.params for p in single], y=[p.mean for p in single],
        text=[f"{p.name}: {len(p.seed_scores)} seed(s)" for p in single], mode="markers",
        name=f"this study, fewer than {several} seeds",
        marker=dict(color="#aaaaaa", size=7, symbol="circle-open")))
    fig.add_trace(go.Scatter(
        x=[p.params for p in confirmed], y=[p.mean for p in confirmed],
        text=[f"{p.name}: {len(p.seed_scores)} seeds" for p in confirmed], mode="markers",
        name=f"this study, {several}+ seeds (bar: worst seed)",
        marker=dict(color=STYLE["complete"][0], size=9),
        error_y=dict(type="data", symmetric=False, array=[0] * len(confirmed),
                     arrayminus=[p.mean - p.worst for p in confirmed])))


def _why_not_drawn(*, protocol: bool, checksum, reference: bool, confirmed: bool) -> str:
    """The by-size figure's subtitle: why the packaged front or the study's own is missing."""
    if not protocol:
        return ("<br><sup>the packaged front is scored on the test split, min of the last 3 "
                "of 15 epochs; this study otherwise: not drawn</sup>")
    if checksum is None:
        return ("<br><sup>this study records no data checksum (made before studies kept "
                "one): the packaged front is not drawn</sup>")
    if not reference:
        return "<br><sup>the packaged front was measured on other data: not drawn</sup>"
    if not confirmed:
        return ("<br><sup>no network of this study ran on several seeds yet: "
                "nas-mnist report --seeds 5 confirms the top ones</sup>")
    return ""


def study_frontier_figure(study: StudyView | optuna.Study, prior=None) -> go.Figure:
    """The study's networks by size against the packaged front: each network's mean over the
    seeds it ran (the worst seed as the lower error bar), the study's own front among those
    run on at least CONFIRMED_SEEDS seeds, and, on the data the prior was made on, the
    packaged front and the public designs re-trained here."""
    from nas_mnist.results.frontier import Point, front, packaged_front, study_points
    from nas_mnist.searcher.prior import load_prior
    from nas_mnist.searcher.record import CONFIRMED_SEEDS
    view = view_of(study)
    meta = view.meta
    prior = load_prior() if prior is None else prior
    checksum = next((r.data_checksum for r in view.feasible if r.data_checksum), None)

    def row(p: Point) -> dict:
        return {"name": p.name, "params": p.params, "mean": p.mean, "worst": p.worst}

    mine = study_points(view)
    confirmed = [p for p in mine if len(p.seed_scores) >= CONFIRMED_SEEDS]
    single = [p for p in mine if len(p.seed_scores) < CONFIRMED_SEEDS]
    # the packaged front is scored one way: test split, min of the last 3 of 15 epochs
    protocol = (meta.eval_split, meta.objective, meta.last_n, meta.epochs) == ("test", "min", 3,
                                                                               15)
    reference = (packaged_front(prior, data_checksum=checksum, exclude=view.name)
                 if protocol else [])
    public = [{"name": d.name, "params": d.params, "mean": d.mean, "recipe": d.recipe}
              for d in prior.public if d.data_checksum == checksum and protocol]
    fig = go.Figure()
    if reference:
        fig.add_trace(_front_trace([row(p) for p in reference],
                                   "the packaged front (5+ seeds; bar: worst seed)",
                                   line=dict(color="#888888", dash="dot")))
    _add_public(fig, public)
    _add_study(fig, single, confirmed, CONFIRMED_SEEDS)
    if confirmed:
        fig.add_trace(_front_trace([row(p) for p in front(confirmed)],
                                   "this study's front", line=dict(color="#ff7f0e"),
                                   marker=dict(color="#ff7f0e", size=11, symbol="star")))
    fig.add_vline(x=meta.budget, line_dash="dash")  # its label: plotly misplaces it on a log axis
    fig.add_annotation(x=math.log10(meta.budget), y=1, yref="paper", text="budget",
                       showarrow=False, xanchor="left", yanchor="bottom")
    ys = [p.mean for p in [*mine, *reference]] + [p["mean"] for p in public]
    if ys:  # zoom as the Pareto plots do: networks far below would flatten the front
        low = max(min(ys), max(ys) - ZOOM_POINTS)
        fig.update_yaxes(range=[low - 0.1, min(100.0, max(ys) + 0.2)])
    title = f"Study {view.name} by size, against the packaged front" + _why_not_drawn(
        protocol=protocol, checksum=checksum, reference=bool(reference), confirmed=bool(confirmed))
    fig.update_layout(title=title, xaxis_title="parameters (log scale)", xaxis_type="log",
                      yaxis_title=f"{meta.eval_split} accuracy % (mean of seeds)",
                      template="plotly_white",  # a PNG cuts a legend taller than the plot
                      height=max(FIGURE_HEIGHT, LEGEND_MARGIN_PX + LEGEND_ROW_PX * len(fig.data)))
    return fig
