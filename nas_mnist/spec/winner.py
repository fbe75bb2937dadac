"""A winner file (`export`'s trialN.json) as a typed record, checked whole when it is read.

Every reader (`train`, `predict`, `load_winner`, the export check) takes its facts from here:
one spelling of the training recipe, seed, threads, normalisation and weights file, each
checked with the file and the key named in the message.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

from nas_mnist.errors import SpecError
from nas_mnist.spec.arch import ArchConfig, arch_of_doc, load_arch
from nas_mnist.spec.recipe import Recipe


@dataclass(frozen=True)
class WinnerFile:
    path: Path
    arch: ArchConfig
    recipe: Recipe
    seed: int = 0
    threads: int | None = None
    # mean and std of the training images the weights were trained with (None: not recorded)
    normalisation: tuple[float, float] | None = None
    weights_name: str | None = None  # the weights file beside it (None: trialN.pt)
    doc: dict = field(default_factory=dict, repr=False, compare=False)  # the whole document

    @classmethod
    def read(cls, path: str | Path) -> "WinnerFile":
        """A winner file or a bare architecture (then the default recipe, seed 0, no
        normalisation); SpecError naming the file and the key for anything malformed."""
        _, doc = load_arch(path)
        return cls.of(doc, path)

    @classmethod
    def of(cls, doc: dict, path: str | Path) -> "WinnerFile":
        """The record of a winner document (one being read, or one `export` builds to write
        at `path`), checked as a file read from `path` is."""
        path = Path(path)
        arch = arch_of_doc(doc, path)  # checks the arch, seed, threads and params
        try:
            recipe = Recipe.from_dict(doc.get("recipe", {}) if "arch" in doc else {})
        except SpecError as err:
            raise SpecError(f"{path}: {err}") from None
        return cls(path, arch, recipe, seed=int(doc.get("seed", 0)), threads=doc.get("threads"),
                   normalisation=_normalisation(doc.get("normalisation"), path),
                   weights_name=_weights_name(doc.get("weights"), path), doc=doc)

    def with_keys(self, **keys) -> "WinnerFile":
        """A new record whose document has these top-level keys set (the record is frozen:
        export builds a winner in steps, each a new, checked record)."""
        return WinnerFile.of({**self.doc, **keys}, self.path)

    def to_dict(self) -> dict:
        """The document as written: JSON-ready."""
        return copy.deepcopy(self.doc)

    @property
    def metrics(self) -> dict:
        return self.doc.get("metrics", {})

    @property
    def deployed(self) -> dict:
        """Format -> what export verified of that file (empty: none written)."""
        return self.doc.get("deployed", {})

    @property
    def files(self) -> dict:
        """Role ('weights', a format, '<format>_header') -> file name beside the winner."""
        return self.doc.get("files", {})

    @property
    def weights_path(self) -> Path:
        return self.path.with_name(self.weights_name or self.path.stem + ".pt")


def _normalisation(norm, path: Path) -> tuple[float, float] | None:
    if norm is None or (isinstance(norm, dict) and norm.get("mean") is None
                        and norm.get("std") is None):
        return None  # files exported before normalisation was recorded
    if not isinstance(norm, dict):
        raise SpecError(f"{path}: normalisation must be {{'mean': M, 'std': S}}, got {norm!r}"[:200])
    mean, std = norm.get("mean"), norm.get("std")
    for key, value in (("mean", mean), ("std", std)):
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not math.isfinite(value)):
            raise SpecError(f"{path}: normalisation {key} must be a finite number, got "
                            f"{value!r}"[:200])
    if not 0.0 <= mean <= 1.0:
        raise SpecError(f"{path}: normalisation mean must be in [0, 1] (images are in [0, 1]), "
                        f"got {mean!r}")
    if not 0.0 < std <= 1.0:
        raise SpecError(f"{path}: normalisation std must be in (0, 1], got {std!r}")
    return float(mean), float(std)


def _weights_name(weights, path: Path) -> str | None:
    if weights is None:
        return None
    name = weights.get("file") if isinstance(weights, dict) else None
    if name is None and isinstance(weights, dict):
        return None
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise SpecError(f"{path}: weights file must be a file name beside it, got "
                        f"{weights!r}"[:200])
    return name
