"""What a study produced: `export` and `report`."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import nas_mnist.api.checks as checks
from nas_mnist.api.errors import ApiError

CALIBRATION_IMAGES = 1024  # training images whose ranges calibrate an int8 export

def export(*, study: str, storage: str | None = None, out: str | None = None,
           format: Sequence[str] = (), trial: int | None = None, pareto: bool = False,
           artifacts: str | None = None, data_dir: str | None = None, device: str = "auto",
           threads: int | None = None, calibration_images: int | None = None,
           device_ram: int | None = None,
           log: Callable[[str], None] | None = print) -> list[Path]:
    """Write winner files for the best trial (or `trial`, or the Pareto front), as
    `nas-mnist export`; returns the winner JSON paths. `format`: "onnx", "onnx-int8" (static
    int8, ranges from `calibration_images` training images, default 1,024), "torchscript",
    "tflite-int8" (full int8, checked in LiteRT and TFLite Micro), "c" (C source and header,
    compiled and checked). `device_ram`: bytes of RAM of the target part; a tflite-int8 or c
    export whose arena does not fit is refused."""
    from nas_mnist.results.deploy import FORMATS, INT8_FORMATS
    from nas_mnist.results.export import export_trials
    from nas_mnist.results.view import StudyView
    from nas_mnist.searcher.storage import (check_study_name, default_artifacts,
                                            default_storage, load_study as ls)
    check_study_name(study)
    formats = checks.strings("format", format, tuple(FORMATS))
    checks.integer("trial", trial, 0, none_ok=True)
    checks.integer("calibration_images", calibration_images, 1, none_ok=True)
    if calibration_images is not None and not set(formats) & INT8_FORMATS:
        raise ApiError("calibration_images applies to the int8 formats only (onnx-int8, "
                       f"tflite-int8, c; given formats: {', '.join(formats) or 'none'})",
                       params=("calibration_images",))
    checks.integer("device_ram", device_ram, 1, none_ok=True)
    if device_ram is not None and not set(formats) & {"tflite-int8", "c"}:
        raise ApiError("device_ram applies to formats tflite-int8 and c only (given formats: "
                       f"{', '.join(formats) or 'none'})", params=("device_ram",))
    checks.integer("threads", threads, 1, none_ok=True)
    out, artifacts, data_dir = (checks.path_or_none(n, v) for n, v in
                                (("out", out), ("artifacts", artifacts), ("data_dir", data_dir)))
    url = storage or default_storage(study)
    return export_trials(StudyView.read(ls(study, url)), url=url, out=out, formats=list(formats), trial=trial,
                         pareto=pareto, artifacts=artifacts or default_artifacts(url, study),
                         data_dir=data_dir, device=device, threads=threads,
                         calibration_images=calibration_images or CALIBRATION_IMAGES,
                         device_ram=device_ram, log=log or (lambda line: None))


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
    from nas_mnist.files import made_folder, write_text
    from nas_mnist.results.export import ExportError
    from nas_mnist.results.report import write_report
    from nas_mnist.results.view import StudyView
    from nas_mnist.results.seeds import check_choice, earlier_seed_runs, report_seed_runs
    from nas_mnist.searcher.storage import default_storage, load_study as ls
    from nas_mnist.searcher.storage import check_study_name
    say = log or (lambda line: None)
    check_study_name(study)
    checks.integer("top", top, 1)
    checks.integer("seeds", seeds, 1, none_ok=True)
    checks.integer("confirm_top", confirm_top, 0)
    checks.integer("jobs", jobs, 1)
    checks.integer("threads", threads, 1, none_ok=True)
    confirm = checks.integers("confirm", confirm, 0)
    reuse = list(checks.paths("reuse", reuse))
    out, data_dir = checks.path_or_none("out", out), checks.path_or_none("data_dir", data_dir)
    check_choice(seeds=seeds, confirm=confirm, confirm_top=confirm_top, winner=winner,
                 reuse=reuse, jobs=jobs)
    folder = Path(out) if out else Path("studies") / f"{study}-report"
    if folder.exists() and not folder.is_dir():
        raise ApiError(f"out {folder} is a file, not a folder")
    url = storage or default_storage(study)
    # one snapshot for every page and table; writable with seeds: their runs are kept in it
    opened = StudyView.read(ls(study, url, read_only=not seeds))
    if not opened.feasible:
        raise ExportError(f"study {study!r} has no complete feasible trial yet: nothing to "
                          f"report")
    with made_folder(folder):  # a report that fails leaves no empty folder behind
        if seeds:
            seed_runs, kept = report_seed_runs(
                opened, seeds=seeds, confirm=confirm, confirm_top=confirm_top, winner=winner,
                reuse=reuse, earlier=folder / "seeds.json", jobs=jobs, data_dir=data_dir,
                device=device, threads=threads, log=say, url=url)
            opened = StudyView.read(opened.study)  # again: with the seed runs just kept in it
        else:
            seed_runs, kept = earlier_seed_runs(folder, say), []
        written, png_note = write_report(opened, folder, top=top, png=not no_png,
                                         seed_runs=seed_runs)
        if seeds and seed_runs:  # without seeds the folder's file is only read: it stays
            text = json.dumps([run.to_json() for run in seed_runs + kept], indent=2)
            write_text(folder / "seeds.json", text)
        if png_note:
            say(png_note)
        return written
