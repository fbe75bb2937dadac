"""A winner file (`export`'s trialN.json) as a typed record, checked whole when it is read.

Every reader (`train`, `predict`, `load_winner`, the export check) takes its facts from here:
one spelling of the training recipe, seed, threads, normalisation and weights file, each
checked with the file and the key named in the message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from nas_mnist.errors import SpecError
from nas_mnist.spec.arch import ArchConfig, load_arch
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
        path = Path(path)
        arch, doc = load_arch(path)  # checks the arch, seed, threads and params
        try:
            recipe = Recipe.from_dict(doc.get("recipe", {}) if "arch" in doc else {})
        except SpecError as err:
            raise SpecError(f"{path}: {err}") from None
        return cls(path, arch, recipe, seed=int(doc.get("seed", 0)), threads=doc.get("threads"),
                   normalisation=_normalisation(doc.get("normalisation"), path),
                   weights_name=_weights_name(doc.get("weights"), path), doc=doc)

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
