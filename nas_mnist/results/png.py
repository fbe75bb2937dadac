"""PNG copies of report figures: kaleido drives a headless Chromium, in a child process group
that is killed (Chromium included) when it hangs instead of failing."""

from __future__ import annotations

import re
from pathlib import Path

import plotly.graph_objects as go

from nas_mnist.files import publish, staged

PNG_TIMEOUT_S = 300  # kaleido drives a headless Chromium that can hang instead of failing


def write_pngs(figures: list[go.Figure], paths: list[Path],
               timeout_s: float = PNG_TIMEOUT_S) -> str | None:
    """PNG copies, rendered in one kaleido session in a child process group that is killed
    (Chromium included) after `timeout_s`. Returns None, or why there are no PNGs."""
    import json
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    hint = "for PNGs: pip install -e '.[png]' and a Chromium, or pass --no-png"
    with tempfile.TemporaryDirectory() as tmp:
        jobs = Path(tmp) / "figures.json"
        jobs.write_text(json.dumps([[fig.to_json(), str(path)] for fig, path in
                                    zip(figures, paths)]), encoding="utf-8")
        child = subprocess.Popen([sys.executable, "-m", "nas_mnist.results.png", str(jobs)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
        try:
            _, err = child.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            for stage in paths[0].parent.glob(".png-*"):  # the killed child's staging folder
                shutil.rmtree(stage, ignore_errors=True)
            return f"no PNG copies (Chromium did not answer in {timeout_s:.0f} s); {hint}"
    if child.returncode != 0:
        return f"no PNG copies ({failure_reason(err)}); {hint}"
    return None


def failure_reason(stderr: str) -> str:
    """The renderer's error in one line: the exception's message from its traceback, not the
    last line (kaleido's missing-Chrome message ends in an indented `$ plotly_get_chrome`)."""
    lines = stderr.strip().splitlines()
    if not lines:
        return "no message"
    heads = [i for i, line in enumerate(lines) if re.match(r"[A-Za-z_][\w.]*(Error|Exception)\b",
                                                             line)]
    if not heads:
        return lines[-1].strip()[:120]
    name, _, first = lines[heads[-1]].partition(":")
    message = " ".join(" ".join([first, *lines[heads[-1] + 1:]]).split())
    if "plotly_get_chrome" in message:  # kaleido: no Chrome; its own installer names itself
        return f"{message.split('.')[0]}; plotly_get_chrome installs one"
    return f"{name}: {message}"[:120] if message else name


def _render_pngs(jobs_path: str) -> None:
    """Child process of write_pngs: every figure in one kaleido session, each file atomic."""
    import json
    import plotly.io as pio
    jobs = json.loads(Path(jobs_path).read_text(encoding="utf-8"))
    paths = [Path(path) for _, path in jobs]
    out = paths[0].parent  # one report folder
    figures = [pio.from_json(fig) for fig, _ in jobs]
    with staged(out, "png") as stage:  # one kaleido session renders them all
        # write_images, unlike write_image, ignores a figure's own size: pass it (None: default)
        pio.write_images(figures, [stage / p.name for p in paths],
                         width=[f.layout.width for f in figures],
                         height=[f.layout.height for f in figures])
        publish(stage, [p.name for p in paths], out)


if __name__ == "__main__":
    import importlib.util
    import sys
    if importlib.util.find_spec("kaleido") is None:  # plotly's own message is several lines
        sys.exit("kaleido is not installed")
    _render_pngs(sys.argv[1])
