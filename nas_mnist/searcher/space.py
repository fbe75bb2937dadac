"""Search spaces: YAML files validated on load (sampling from one: searcher/sampling.py).

A dimension is a fixed scalar, `{choices: [...]}`, or `{low, high}` (ints when both bounds are
ints; floats otherwise, `log: true` for a log scale). Trial parameter names are a storage
schema (`stage{i}_conv{j}_width`, ...): renaming one breaks resuming older studies.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import yaml

from nas_mnist.errors import NasMnistError
from nas_mnist.searcher.dims import (Dim, SearchSpace, SpaceError,  # noqa: F401
                                     WidthScaling)
from nas_mnist.searcher.sampling import smallest_arch
from nas_mnist.spec.blocks import (CONV_KINDS, DROPOUT_KINDS, HEAD_KINDS, INPUT_POOLS, MAX_WIDTH,
                                   POSITIONS, WHERE)
from nas_mnist.spec.recipe import Recipe

ARCH_KEYS = {
    "pools": "number of 2x2 max-pools (stages = pools + 1)",
    "convs_per_stage": "3x3 convs in each stage",
    "width": "output channels of each conv",
    "first_stage_pad": "padding of the convs in stage 1",
    "later_stage_pad": "padding of the convs in later stages",
    "transition_conv": "1x1 conv in each transition (true/false)",
    "transition_width": "channels of that 1x1 conv",
    "transition_where": "before/after the pool",
    "head": "gap_conv, gap_linear or conv_gap",
    "pre_gap": "width of a 1x1 conv before GAP (0: none)",
    "batch_norm": "true/false",
    "dropout": "dropout rate",
    "dropout_kind": "element or channel",
    "dropout_position": "after_relu or before_relu",
}
# Keys a space may leave out (older spaces do): their value when absent.
OPTIONAL_ARCH_KEYS = {
    "conv_kind": "full",  # full, separable or grouped (never for a network's first conv)
    "groups": 2,  # groups of a grouped conv
    "mid_act": True,  # BN + ReLU between the depthwise and pointwise conv of a separable one
    # Stage 1 on its own terms (None: as every stage). Its maps are the largest, so they set
    # the peak RAM: a RAM-bounded space narrows them without narrowing the rest.
    "first_width": None,  # output channels of the network's first conv
    "first_stage_convs": None,  # 3x3 convs in stage 1
    "input_pool": 1,  # 2: a 2x2 average pool of the image first (the 2 KB RAM class)
}
RECIPE_KEYS = set(Recipe.__dataclass_fields__) - {"epochs", "last_n"}
# The spaces ship inside the package (a non-editable install finds them); the repository's
# search_spaces/ is a link to this folder, the place users read and copy from.
SPACE_DIR = Path(__file__).resolve().parent.parent / "spaces"
MAX_CHOICES = 256  # entries in one choice list
MAX_POOLS = 7  # 2x2 pools: 28 px is gone after 4; ARCH bounds the stages to 8
MAX_CONVS_PER_STAGE = 16


def _parse_dim(key: str, spec) -> Dim:
    if not isinstance(spec, dict):
        if isinstance(spec, list):
            raise SpaceError(f"search space key '{key}': write a list as {{choices: [...]}}")
        return Dim(key, fixed=spec)
    unknown = set(spec) - {"choices", "low", "high", "log"}
    if unknown:
        raise SpaceError(f"search space key '{key}': unknown field(s) {sorted(unknown)}")
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise SpaceError(f"search space key '{key}': choices must be a non-empty list")
        if len(spec["choices"]) > MAX_CHOICES:
            raise SpaceError(f"search space key '{key}': at most {MAX_CHOICES} choices, got "
                             f"{len(spec['choices'])}")
        return Dim(key, choices=tuple(spec["choices"]))
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise SpaceError(f"search space key '{key}': needs numeric 'low' and 'high'")
    if low > high or (spec.get("log") and low <= 0):
        raise SpaceError(f"search space key '{key}': need 0 < low <= high for log, low <= high")
    return Dim(key, low=low, high=high, log=bool(spec.get("log", False)))


def resolve_space_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = SPACE_DIR / f"{name_or_path}.yaml"
    if path.is_dir():
        raise SpaceError(f"search space {path} is a folder, not a YAML file")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SPACE_DIR.glob("*.yaml")))
        raise SpaceError(f"search space {name_or_path} not found (looked for {path}; "
                         f"packaged spaces: {known})")
    return path


def packaged_space_with(digest: str) -> str | None:
    """The name of the packaged space with this content digest (studies record the digest;
    the space called `default` before the focused one is now `wide`), or None."""
    for path in sorted(SPACE_DIR.glob("*.yaml")):
        try:
            if load_space(str(path)).digest == digest:
                return path.stem
        except NasMnistError:
            continue
    return None


MAX_SPACE_BYTES = 64 * 1024  # the shipped spaces are 2-4 KB


class _SpaceLoader(yaml.SafeLoader):
    """YAML for a space file: no aliases (a few lines of nested aliases expand to gigabytes),
    no key given twice (YAML would keep the last one silently)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise SpaceError(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) "
                             f"are not allowed in a search space; write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise SpaceError(f"line {key_node.start_mark.line + 1}: key '{key}' is given "
                                 f"twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_space(name_or_path: str) -> SearchSpace:
    path = resolve_space_path(name_or_path)
    from nas_mnist.files import FileReadError, read_text_bounded
    try:
        doc = yaml.load(read_text_bounded(path, MAX_SPACE_BYTES, "search space"),
                        Loader=_SpaceLoader)
    except FileReadError as err:
        raise SpaceError(str(err)) from None
    except SpaceError as err:
        raise SpaceError(str(err) if str(err).startswith("search space ")
                         else f"search space {path}: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpaceError(f"cannot read search space {path}: {err}") from None
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise SpaceError(f"search space {path} is not valid YAML{where}") from None
    if not isinstance(doc, dict):
        raise SpaceError(f"search space {path}: expected a mapping of keys")
    scaling = _parse_scaling(doc.pop("scale_widths", None))  # not in the digest: the study
    # stores the factor it used, so a file that gains the key resumes its older studies
    recipe_doc = doc.pop("recipe", {}) or {}
    if not isinstance(recipe_doc, dict):
        raise SpaceError("search space key 'recipe': expected a mapping")
    for key in doc:
        if key not in ARCH_KEYS and key not in OPTIONAL_ARCH_KEYS:
            raise SpaceError(f"search space {path}: unknown key '{key}'")
    missing = set(ARCH_KEYS) - set(doc)
    if missing and doc:  # no architecture key at all: a recipe space (a fixed architecture)
        raise SpaceError(f"search space {path}: missing key '{sorted(missing)[0]}'")
    for key in recipe_doc:
        if key not in RECIPE_KEYS:
            raise SpaceError(f"search space {path}: unknown key 'recipe.{key}'")
    arch = {k: _parse_dim(k, v) for k, v in doc.items()}
    for key, value in OPTIONAL_ARCH_KEYS.items():
        if doc:  # not in the digest: old studies resume
            arch.setdefault(key, Dim(key, fixed=value))
    if not arch and not recipe_doc:
        raise SpaceError(f"search space {path}: no key; a space has the architecture keys, "
                         f"a 'recipe' mapping, or both")
    recipe = {k: _parse_dim(f"recipe.{k}", v) for k, v in recipe_doc.items()}
    digest = hashlib.sha256(json.dumps([doc, recipe_doc], sort_keys=True,
                                       default=str).encode()).hexdigest()[:16]
    space = SearchSpace(path.stem, arch, recipe, digest, scaling=scaling)
    _check_values(space)
    return space


def _parse_scaling(spec) -> WidthScaling | None:
    """`scale_widths: {reference: 10000, exponent: 0.6}` (see dims.WidthScaling)."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) != {"reference", "exponent"}:
        raise SpaceError("search space key 'scale_widths': expected {reference: PARAMS, "
                         "exponent: X}")
    ref, exp = spec["reference"], spec["exponent"]
    if not isinstance(ref, int) or isinstance(ref, bool) or ref < 1:
        raise SpaceError(f"search space key 'scale_widths.reference': {ref!r} is not a "
                         f"positive integer")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not 0 <= exp <= 2:
        raise SpaceError(f"search space key 'scale_widths.exponent': {exp!r} is not a number "
                         f"in [0, 2]")
    return WidthScaling(ref, float(exp))


def _count(low: int, high: int):
    def ok(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
    return ok, f"an integer in [{low}, {high}]"


def _one_of(options):
    return (lambda v: isinstance(v, (str, bool)) and v in options), \
        "one of " + ", ".join(map(str, options))


_FLAG = ((lambda v: isinstance(v, bool)), "true or false")
_WIDTH = _count(1, MAX_WIDTH)
# What every value of each architecture key may be: checked for every choice and both ends of
# every range when a space is read, so a bad value is named by its key before a study exists
# (not met sample by sample, and blamed on the budget, after 200 refusals).
ARCH_VALUES = {
    "pools": _count(0, MAX_POOLS),
    "convs_per_stage": _count(1, MAX_CONVS_PER_STAGE),
    "first_stage_convs": _count(1, MAX_CONVS_PER_STAGE),
    "width": _WIDTH,
    "first_width": _WIDTH,
    "transition_width": _WIDTH,
    "groups": _WIDTH,
    "pre_gap": ((lambda v: v is None or _count(0, MAX_WIDTH)[0](v)),
                f"0 or none, or an integer in [1, {MAX_WIDTH}]"),
    "first_stage_pad": _count(0, 1),
    "input_pool": ((lambda v: isinstance(v, int) and not isinstance(v, bool) and v in INPUT_POOLS),
                   "one of " + ", ".join(map(str, INPUT_POOLS))),
    "later_stage_pad": _count(0, 1),
    "transition_conv": _FLAG,
    "batch_norm": _FLAG,
    "mid_act": _FLAG,
    "transition_where": _one_of(WHERE),
    "head": _one_of(HEAD_KINDS),
    "conv_kind": _one_of(CONV_KINDS),
    "dropout_kind": _one_of(DROPOUT_KINDS),
    "dropout_position": _one_of(POSITIONS),
    "dropout": ((lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                 and math.isfinite(v) and 0.0 <= v < 1.0), "a rate in [0, 1)"),
}


def _every_value(dim: Dim) -> list:
    if dim.is_fixed:
        return [dim.fixed]
    if dim.choices is not None:
        return list(dim.choices)
    return [dim.low, dim.high]


def _check_values(space: SearchSpace) -> None:
    """Every value of every dimension, then the extreme values of the recipe and the smallest
    network, so that bad values fail at load time with their key."""
    for key, dim in space.arch.items():
        if key in OPTIONAL_ARCH_KEYS and dim.is_fixed and dim.fixed is None:
            continue  # not set by this space: the general dimension applies
        ok, wanted = ARCH_VALUES[key]
        for value in _every_value(dim):
            if not ok(value):
                raise SpaceError(f"search space {space.name}: key '{key}': {value!r} is not "
                                 f"{wanted}"[:300])
    for key, dim in space.recipe.items():
        for value in dim.values_for_min() + ([dim.high] if dim.high is not None else []):
            try:
                Recipe.from_dict({key.removeprefix("recipe."): value})
            except (ValueError, TypeError) as err:
                raise SpaceError(f"search space key '{dim.name}': {err}") from None
    for key, high in () if not space.samples_arch else (("pools", MAX_POOLS), ("convs_per_stage", MAX_CONVS_PER_STAGE),
                      ("first_stage_convs", MAX_CONVS_PER_STAGE)):
        dim = space.arch[key]
        if dim.is_fixed and dim.fixed is None:
            continue
        for value in dim.values_for_min() + ([dim.high] if dim.high is not None else []):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
                raise SpaceError(f"search space key '{key}': {value!r} is not a count in "
                                 f"[0, {high}]")
    if space.samples_arch:
        smallest_arch(space)
