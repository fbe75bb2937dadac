"""What a study produced: `export` and `report`."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from nas_mnist.api.errors import ApiError

def export(*, study: str, storage: str | None = None, out: str | None = None,
           format: Sequence[str] = (), trial: int | None = None, pareto: bool = False,
           artifacts: str | None = None, data_dir: str | None = None, device: str = "auto",
           threads: int | None = None, calibration_images: int = 1024,
           log: Callable[[str], None] | None = print) -> list[Path]:
    """Write winner files for the best trial (or `trial`, or the Pareto front), as
    `nas-mnist export`; returns the winner JSON paths. `format`: "onnx", "onnx-int8" (static
    int8, ranges from `calibration_images` training images), "torchscript"."""
    from nas_mnist.results.export import export_trials
    from nas_mnist.results.view import StudyView
    from nas_mnist.searcher.storage import default_artifacts, default_storage, load_study as ls
    url = storage or default_storage(study)
    return export_trials(StudyView.read(ls(study, url)), url=url, out=out, formats=list(format), trial=trial,
                         pareto=pareto, artifacts=artifacts or default_artifacts(url, study),
                         data_dir=data_dir, device=device, threads=threads,
                         calibration_images=calibration_images,
                         log=log or (lambda line: None))


def report(*, study: str, storage: str | None = None, out: str | None = None,
           top: int = 10, no_png: bool = False, seeds: int | None = None,
           confirm: Sequence[int] = (), confirm_top: int = 1, winner: bool = True,
           reuse: Sequence[str] = (), jobs: int = 1, data_dir: str | None = None,
           device: str = "auto", threads: int | None = None,
           log: Callable[[str], None] | None = None) -> list[Path]:
    """Plots (HTML, PNG where kaleido and a Chromium are present) and the Markdown summary, as
    `nas-mnist report`; returns the files written.

    `seeds=K` re-trains the best `confirm_top` trials (and the `confirm` ones; `winner=False`:
    only those) on seeds 0..K-1 with the study's data and split, `jobs` processes at a time,
    taking runs of exactly the same configuration from the folder's seeds.json or `reuse`
    files instead, and puts the seed table in the summary (seeds.json keeps the runs).
    Without `seeds` an earlier seed table of the folder is kept. `log` gets progress lines."""
    import json
    from nas_mnist.files import write_text
    from nas_mnist.results.export import ExportError
    from nas_mnist.results.report import write_report
    from nas_mnist.results.view import StudyView
    from nas_mnist.results.seeds import check_choice, earlier_seed_runs, report_seed_runs
    from nas_mnist.searcher.storage import default_storage, load_study as ls
    say = log or (lambda line: None)
    confirm, reuse = list(confirm), list(reuse)
    check_choice(seeds=seeds, confirm=confirm, confirm_top=confirm_top, winner=winner,
                 reuse=reuse, jobs=jobs)
    folder = Path(out) if out else Path("studies") / f"{study}-report"
    if folder.exists() and not folder.is_dir():
        raise ApiError(f"out {folder} is a file, not a folder")
    url = storage or default_storage(study)
    opened = StudyView.read(ls(study, url))  # one snapshot for every page and table
    if not opened.feasible:
        raise ExportError(f"study {study!r} has no complete feasible trial yet: nothing to "
                          f"report")
    folder.mkdir(parents=True, exist_ok=True)
    if seeds:
        seed_runs, kept = report_seed_runs(
            opened, seeds=seeds, confirm=confirm, confirm_top=confirm_top, winner=winner,
            reuse=reuse, earlier=folder / "seeds.json", jobs=jobs, data_dir=data_dir,
            device=device, threads=threads, log=say)
    else:
        seed_runs, kept = earlier_seed_runs(folder, say), []
    written, png_note = write_report(opened, folder, top=top, png=not no_png,
                                     seed_runs=seed_runs)
    if seed_runs:
        text = json.dumps([run.to_json() for run in seed_runs + kept], indent=2)
        write_text(folder / "seeds.json", text)
    if png_note:
        say(png_note)
    return written
