"""Files the user keeps: written atomically (temporary file, then rename), paths checked early."""

from __future__ import annotations

import os
from pathlib import Path

from nas_mnist.cli.common import UsageError


def write_text_atomic(path, text: str | None) -> None:
    """Write `text` to `path` through a temporary file; with None only check that it can be
    written (a folder, or a missing parent, is a one-line error before any long work)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    if text is None:
        if not os.access(path.parent, os.W_OK):
            raise UsageError(f"cannot write {path}: folder {path.parent} is not writable")
        return
    from nas_mnist.results.export import atomic_write
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
