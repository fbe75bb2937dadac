"""The blocks of a network: conv blocks, transitions, the head, and the bounds and strict
checks every config value passes. Pure data, builds nothing."""

from __future__ import annotations

from dataclasses import dataclass, fields

from nas_mnist.errors import SpecError

# Bounds on what a file can ask for: MNIST-sized networks, never hours of work or GBs of memory
# from a small input (a 5 MB config of 250,000 convs, a width of 100,000).
MAX_WIDTH = 1024
MAX_CONVS = 64  # convs in the whole network
MAX_STAGES = 8
MAX_IMAGE_SIZE = 256
MAX_CHANNELS = 16  # input channels
MAX_CLASSES = 1000
MAX_PARAMS = 10_000_000
MAX_CONFIG_BYTES = 1_000_000

POSITIONS = ("after_relu", "before_relu")
DROPOUT_KINDS = ("element", "channel")
HEAD_KINDS = ("gap_conv", "gap_linear", "conv_gap")
WHERE = ("before", "after")
INPUT_POOLS = (1, 2)  # the image's downsampling before the first conv (2: a 2x2 average pool)


def check_keys(cls, data: dict, where: str) -> None:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected an object, got {type(data).__name__}")
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {sorted(unknown)}")


def positive_int(value, what: str, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(f"{what} must be a positive integer, got {value!r}")
    if high is not None and value > high:
        raise SpecError(f"{what} must be at most {high:,}, got {value:,}")


def one_of(value, allowed: tuple, what: str) -> None:
    """`value` is one of `allowed` with the same type: True is not 1, 1.0 is not 1."""
    if not any(type(value) is type(a) and value == a for a in allowed):
        raise SpecError(f"{what} must be one of {allowed}, got {value!r}")


def check_flag(value, what: str) -> None:
    if not isinstance(value, bool):
        raise SpecError(f"{what} must be true or false, got {value!r}")


CONV_KINDS = ("full", "separable", "grouped")


@dataclass(frozen=True)
class ConvSpec:
    """One conv block: `out` channels, kernel `k` (3 or 1), padding `pad` (0 or 1).

    `kind`: "full" (a plain conv), "separable" (a depthwise kxk conv, then a pointwise 1x1
    conv to `out`; with `mid_act` the depthwise conv gets its own BN and ReLU, as in
    MobileNet, without it none, as in Xception) or "grouped" (`groups` > 1 dividing both
    channel counts). The block's BN, ReLU and dropout follow the last conv as usual.
    """

    out: int
    pad: int = 1
    k: int = 3
    kind: str = "full"
    groups: int = 1
    mid_act: bool = True

    def __post_init__(self):
        positive_int(self.out, "conv out channels", MAX_WIDTH)
        one_of(self.k, (1, 3), "conv kernel k")
        one_of(self.pad, (0, 1), "conv padding pad")
        one_of(self.kind, CONV_KINDS, "conv kind")
        positive_int(self.groups, "conv groups", MAX_WIDTH)
        check_flag(self.mid_act, "conv mid_act")
        if self.kind == "separable" and self.k == 1:
            raise SpecError("a separable conv needs a kernel of 3 (k=1 is a plain 1x1 conv)")
        if (self.kind == "grouped") != (self.groups > 1):
            raise SpecError(f"a grouped conv needs groups > 1 and only a grouped conv has "
                            f"groups; got kind {self.kind!r} with groups {self.groups}")
        if self.kind == "grouped" and self.out % self.groups:
            raise SpecError(f"conv groups {self.groups} do not divide its {self.out} output "
                            f"channels")

    def n_params(self, c_in: int, *, bias: int, bn: int) -> int:
        """Parameters of this block with `c_in` input channels (bias, bn: per channel)."""
        if self.kind == "separable":
            depthwise = c_in * self.k * self.k + c_in * (bias + (bn if self.mid_act else 0))
            return depthwise + c_in * self.out + self.out * (bias + bn)
        return c_in * self.out * self.k * self.k // self.groups + self.out * (bias + bn)

    def check_input(self, c_in: int, where: str) -> None:
        if self.kind == "grouped" and c_in % self.groups:
            raise SpecError(f"{where}: groups {self.groups} do not divide its {c_in} input "
                            f"channels")

    def tag(self) -> str:
        """'24' full, '24s' separable, '24g4' grouped in 4, then 'v' when unpadded, '(1x1)'."""
        kind = {"full": "", "separable": "s", "grouped": f"g{self.groups}"}[self.kind]
        if self.kind == "separable" and not self.mid_act:
            kind = "x"  # Xception-style: no BN/ReLU between the two convs
        return (f"{self.out}{kind}{'' if self.pad else 'v'}"
                f"{'' if self.k == 3 else '(1x1)'}")


@dataclass(frozen=True)
class Transition:
    """2x2 max-pool; `conv1x1` channels of 1x1 conv `where` = before/after it (None: none).

    `act` puts BN (if enabled) and ReLU after the 1x1 conv, as in a conv block.
    """

    conv1x1: int | None = None
    where: str = "before"
    act: bool = False

    def __post_init__(self):
        if self.conv1x1 is not None:
            positive_int(self.conv1x1, "transition conv1x1 width", MAX_WIDTH)
        one_of(self.where, WHERE, "transition 'where'")
        check_flag(self.act, "transition 'act'")


@dataclass(frozen=True)
class Head:
    """Classifier head.

    gap_conv: [1x1 conv pre_gap] -> GAP -> 1x1 conv to classes
    gap_linear: [1x1 conv pre_gap] -> GAP -> linear to classes
    conv_gap: [1x1 conv pre_gap] -> 1x1 conv to classes -> GAP
    The optional `pre_gap` 1x1 conv is a full conv block (BN/ReLU as configured).
    """

    kind: str = "gap_conv"
    pre_gap: int | None = None
    bias: bool = False

    def __post_init__(self):
        one_of(self.kind, HEAD_KINDS, "head kind")
        if self.pre_gap is not None:
            positive_int(self.pre_gap, "head pre_gap width", MAX_WIDTH)
        check_flag(self.bias, "head bias")
