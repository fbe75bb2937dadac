"""Architecture config: pure data describing one CNN of the family. Builds nothing.

A network is a list of stages of convolutions, joined by transitions (a 2x2 max-pool with an
optional 1x1 conv before or after it), followed by a head. Every conv block is
conv -> [BN] -> ReLU -> [dropout], with BN and dropout placed before or after the ReLU.
An invalid config raises SpecError (a ValueError) when it is made, never deep inside torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nas_mnist.errors import SpecError

from nas_mnist.spec.blocks import (  # noqa: F401 (re-exported: the config's vocabulary)
    CONV_KINDS, DROPOUT_KINDS, HEAD_KINDS, INPUT_POOLS, MAX_CHANNELS, MAX_CLASSES, MAX_CONFIG_BYTES, MAX_CONVS,
    MAX_IMAGE_SIZE, MAX_PARAMS, MAX_STAGES, MAX_WIDTH, POSITIONS, WHERE, ConvSpec, Head,
    Transition, check_flag, check_keys, one_of, positive_int)


@dataclass(frozen=True)
class ArchConfig:
    stages: tuple[tuple[ConvSpec, ...], ...]
    transitions: tuple[Transition, ...] = ()
    head: Head | None = field(default_factory=Head)
    batch_norm: bool = True
    bn_position: str = "before_relu"
    conv_bias: bool = False
    dropout: float = 0.0
    stage_dropout: tuple[float, ...] | None = None  # overrides `dropout` per stage
    dropout_position: str = "after_relu"
    dropout_kind: str = "element"
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    # 2: the network starts with a 2x2 average pool of the image (28 px -> 14 px), so that the
    # same downsampling runs in training, export and predict; for microcontroller RAM classes
    input_pool: int = 1

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.head is None:
            raise SpecError("missing head: a network needs a classifier head")
        if not self.stages or any(len(stage) == 0 for stage in self.stages):
            raise SpecError("every stage needs at least one conv, and there must be one stage")
        if len(self.stages) > MAX_STAGES:
            raise SpecError(f"at most {MAX_STAGES} stages, got {len(self.stages)}")
        if sum(map(len, self.stages)) > MAX_CONVS:
            raise SpecError(f"at most {MAX_CONVS} convs in a network, got "
                            f"{sum(map(len, self.stages))}")
        set_("stages", tuple(tuple(stage) for stage in self.stages))
        set_("transitions", tuple(self.transitions))
        n = len(self.stages)
        if len(self.transitions) not in (n - 1, n):
            raise SpecError(f"{n} stage(s) need {n - 1} transition(s) between them "
                             f"(or {n} with a pool before the head), got {len(self.transitions)}")
        for name, allowed in (("bn_position", POSITIONS), ("dropout_position", POSITIONS),
                              ("dropout_kind", DROPOUT_KINDS)):
            one_of(getattr(self, name), allowed, name)
        one_of(self.input_pool, INPUT_POOLS, "input_pool")
        check_flag(self.batch_norm, "batch_norm")
        check_flag(self.conv_bias, "conv_bias")
        rates = (self.dropout,) if self.stage_dropout is None else tuple(self.stage_dropout)
        if self.stage_dropout is not None:
            set_("stage_dropout", rates)
            if len(rates) != n:
                raise SpecError(f"stage_dropout needs {n} rates (one per stage), got {len(rates)}")
        for rate in (self.dropout, *rates):
            if (not isinstance(rate, (int, float)) or isinstance(rate, bool)
                    or not 0.0 <= rate < 1.0):
                raise SpecError(f"dropout rate must be in [0, 1), got {rate!r}")
        for name, high in (("in_channels", MAX_CHANNELS), ("image_size", MAX_IMAGE_SIZE),
                           ("num_classes", MAX_CLASSES)):
            positive_int(getattr(self, name), name, high)
        self.feature_sizes()  # raises if the map shrinks to nothing
        c = self.in_channels
        for i, stage in enumerate(self.stages):
            for j, conv in enumerate(stage):
                conv.check_input(c, f"stage {i + 1} conv {j + 1}")
                c = conv.out
            if i < len(self.transitions) and self.transitions[i].conv1x1:
                c = self.transitions[i].conv1x1
        if self.n_params() > MAX_PARAMS:
            raise SpecError(f"the network has {self.n_params():,} parameters, more than "
                            f"nas-mnist builds ({MAX_PARAMS:,})")

    # -- derived facts (pure arithmetic) ------------------------------------------------------

    def stage_rate(self, i: int) -> float:
        return self.dropout if self.stage_dropout is None else self.stage_dropout[i]

    def feature_sizes(self) -> list[int]:
        """Side length of the feature map after every conv and pool; raises if it vanishes."""
        size, sizes = self.image_size // self.input_pool, []
        for i, stage in enumerate(self.stages):
            for j, conv in enumerate(stage):
                size = size - conv.k + 1 + 2 * conv.pad
                if size < 1:
                    raise SpecError(f"feature map shrinks to nothing at stage {i + 1} conv {j + 1}"
                                     f" (too many unpadded convs for a {self.image_size}px input)")
                sizes.append(size)
            if i < len(self.transitions):
                if size < 2:
                    raise SpecError(f"feature map is {size}px before pool {i + 1}: nothing to pool")
                size //= 2
                sizes.append(size)
        return sizes

    def n_params(self) -> int:
        """Closed-form parameter count (checked against fvcore in the tests)."""
        bn = 2 if self.batch_norm else 0
        bias = 1 if self.conv_bias else 0

        def block(c_in: int, c_out: int, k: int) -> int:
            return c_in * c_out * k * k + c_out * (bias + bn)

        total, c = 0, self.in_channels
        for i, stage in enumerate(self.stages):
            for conv in stage:
                total, c = total + conv.n_params(c, bias=bias, bn=bn), conv.out
            if i < len(self.transitions) and self.transitions[i].conv1x1:
                t = self.transitions[i]
                total += c * t.conv1x1 + t.conv1x1 * (bias + (bn if t.act else 0))
                c = t.conv1x1
        if self.head.pre_gap:
            total, c = total + block(c, self.head.pre_gap, 1), self.head.pre_gap
        return total + c * self.num_classes + (self.num_classes if self.head.bias else 0)

    def describe(self) -> str:
        """Short human-readable form, e.g. '12-12 | M | 12x5 | gap_conv'."""
        parts = []
        for i, stage in enumerate(self.stages):
            parts.append("-".join(c.tag() for c in stage))
            if i < len(self.transitions):
                t = self.transitions[i]
                tag = f"t{t.conv1x1}" if t.conv1x1 else ""
                parts.append(f"{tag}M" if t.where == "before" else f"M{tag}")
        head = self.head.kind + (f"+{self.head.pre_gap}" if self.head.pre_gap else "")
        pool = [f"/{self.input_pool}"] if self.input_pool > 1 else []
        return " | ".join(pool + parts + [head])

    # -- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict:
        data = asdict(self)
        # new conv fields only where they differ from a plain conv: older configs (and the
        # keys of enqueued trials, hashed from this form) stay as they were
        plain = {"kind": "full", "groups": 1, "mid_act": True}
        data["stages"] = [[{k: v for k, v in asdict(c).items() if k not in plain or plain[k] != v}
                           for c in stage] for stage in self.stages]
        data["transitions"] = [asdict(t) for t in self.transitions]
        data["stage_dropout"] = list(self.stage_dropout) if self.stage_dropout else None
        if self.input_pool == 1:  # as every config before it: their keys stay as they were
            del data["input_pool"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ArchConfig":
        try:
            return cls._from_dict(data)
        except TypeError as err:  # a missing required key, reported by the dataclass
            raise SpecError(f"arch: {err}") from None

    @classmethod
    def _from_dict(cls, data: dict) -> "ArchConfig":
        check_keys(cls, data, "arch")
        data = dict(data)
        if "stages" not in data:
            raise SpecError("arch: missing key 'stages'")
        if not isinstance(data["stages"], (list, tuple)):
            raise SpecError("arch.stages must be a list of stages (lists of convs)")
        if sum(len(s) if isinstance(s, (list, tuple)) else 0 for s in data["stages"]) > MAX_CONVS:
            raise SpecError(f"arch.stages: at most {MAX_CONVS} convs in a network")
        stages = []
        for i, stage in enumerate(data["stages"]):
            if not isinstance(stage, (list, tuple)):
                raise SpecError(f"arch.stages[{i}] must be a list of convs")
            for j, conv in enumerate(stage):
                check_keys(ConvSpec, conv, f"arch.stages[{i}][{j}]")
            stages.append(tuple(ConvSpec(**conv) for conv in stage))
        data["stages"] = tuple(stages)
        transitions = data.get("transitions", [])
        if not isinstance(transitions, (list, tuple)) or len(transitions) > MAX_STAGES:
            raise SpecError(f"arch.transitions must be a list of at most {MAX_STAGES} objects")
        for i, t in enumerate(transitions):
            check_keys(Transition, t, f"arch.transitions[{i}]")
        data["transitions"] = tuple(Transition(**t) for t in transitions)
        if "head" in data:
            if data["head"] is not None:
                check_keys(Head, data["head"], "arch.head")
                data["head"] = Head(**data["head"])
        if data.get("stage_dropout") is not None:
            if not isinstance(data["stage_dropout"], (list, tuple)):
                raise SpecError("arch.stage_dropout must be a list of rates, one per stage")
            data["stage_dropout"] = tuple(data["stage_dropout"])
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ArchConfig":
        return cls.from_dict(json.loads(text))

    def key(self) -> str:
        """Hash of the canonical form: equal configs have equal keys."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def load_arch(path: str | Path) -> tuple[ArchConfig, dict]:
    """Read an architecture file: a bare arch, or an exported winner with an 'arch' key.

    Returns the config and the whole parsed document (which may hold a recipe and metrics).
    A winner's run fields (`seed`, `threads`, `params`) are checked here too.
    """
    from nas_mnist.files import FileReadError, read_text_bounded
    path = Path(path)
    try:
        doc = json.loads(read_text_bounded(path, MAX_CONFIG_BYTES, "config file"))
    except FileReadError as err:
        raise SpecError(str(err)) from None
    except RecursionError:
        raise SpecError(f"config file {path} is nested too deeply") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SpecError(f"config file {path} is not valid JSON: {err}") from None
    return arch_of_doc(doc, path), doc


def arch_of_doc(doc, path: str | Path) -> ArchConfig:
    """The architecture of a parsed config or winner document (`path` names it in errors),
    with a winner's run fields checked."""
    if not isinstance(doc, dict):
        raise SpecError(f"config file {path}: expected a JSON object")
    try:
        arch = ArchConfig.from_dict(doc["arch"] if "arch" in doc else doc)
    except SpecError as err:
        raise SpecError(f"{path}: {err}") from None
    if "arch" in doc:
        _check_run_fields(doc, arch, Path(path))
    return arch


def _check_run_fields(doc: dict, arch: ArchConfig, path: Path) -> None:
    """A winner file's own fields: the right types, and a parameter count that is the arch's."""
    seed = doc.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise SpecError(f"{path}: seed must be an integer in [0, 2**32), got {seed!r}")
    threads = doc.get("threads")
    if threads is not None:
        positive_int(threads, f"{path}: threads", 1024)
    params = doc.get("params")
    if params is not None and params != arch.n_params():
        raise SpecError(f"{path}: the file says params {params!r}, but its arch has "
                        f"{arch.n_params():,} (edited by hand? remove 'params' or fix it)")
