"""A dependency-free C source and header from an `Int8Graph`, and the check that compiles it.

The source holds the int8 weights, int32 biases and per-channel multipliers as const arrays,
a handful of loops (conv, grouped or depthwise; 2x2 max and average pools; global
average pool) and one entry
point, `<name>_predict(input, logits)`. No malloc, no library beyond <stdint.h>: activations
live in one static arena of `<NAME>_ARENA_BYTES`, each op reading one end and writing the
other, so the arena is exactly the tool's int8 peak-RAM figure (the largest input + output of
one op). The arithmetic is TFLite's reference kernels', so the compiled code returns the
logits `Int8Graph.run` returns, bit for bit; `check_c` proves it on the test images.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from nas_mnist.results.int8 import Int8Graph
from nas_mnist.results.models import DeployError

CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]

_KERNEL_TEXT = r"""
static int32_t requantize(int32_t acc, int32_t multiplier, int32_t shift)
{
    /* TFLite's MultiplyByQuantizedMultiplier: rounding doubling high multiply, rounding shift */
    int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    int64_t ab = (int64_t)acc * ((int64_t)1 << left) * multiplier;
    int64_t nudged = ab + (ab >= 0 ? (1LL << 30) : 1 - (1LL << 30));
    int32_t high = (int32_t)(nudged / (1LL << 31));
    int32_t mask = (int32_t)((1LL << right) - 1);
    int32_t threshold = (mask >> 1) + (high < 0 ? 1 : 0);
    return (high >> right) + ((high & mask) > threshold ? 1 : 0);
}

static int8_t clamp8(int32_t v, int32_t lo)
{
    return (int8_t)(v < lo ? lo : (v > 127 ? 127 : v));
}

static void conv(const int8_t *in, int h, int w, int c, int32_t in_zero,
                 const int8_t *wt, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                 int8_t *out, int oh, int ow, int oc, int k, int pad, int groups,
                 int32_t out_zero, int32_t act_min)
{
    /* NHWC; weights (out, k, k, in / groups); a padded pixel is the input zero point */
    int cg = c / groups, og = oc / groups;
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
            for (int o = 0; o < oc; o++) {
                int32_t acc = bias[o];
                int first = (o / og) * cg;
                for (int ky = 0; ky < k; ky++) {
                    int iy = y + ky - pad;
                    if (iy < 0 || iy >= h) continue;
                    for (int kx = 0; kx < k; kx++) {
                        int ix = x + kx - pad;
                        if (ix < 0 || ix >= w) continue;
                        const int8_t *px = in + (iy * w + ix) * c + first;
                        const int8_t *pw = wt + ((o * k + ky) * k + kx) * cg;
                        for (int i = 0; i < cg; i++) acc += ((int32_t)px[i] - in_zero) * pw[i];
                    }
                }
                out[(y * ow + x) * oc + o] =
                    clamp8(requantize(acc, mult[o], shift[o]) + out_zero, act_min);
            }
}

static void maxpool2(const int8_t *in, int w, int c, int8_t *out, int oh, int ow)
{
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
            for (int ch = 0; ch < c; ch++) {
                int8_t m = -128;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        int8_t v = in[((2 * y + dy) * w + 2 * x + dx) * c + ch];
                        if (v > m) m = v;
                    }
                out[(y * ow + x) * c + ch] = m;
            }
}

static void avgpool2(const int8_t *in, int w, int c, int8_t *out, int oh, int ow)
{
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
            for (int ch = 0; ch < c; ch++) {
                int32_t acc = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++)
                        acc += in[((2 * y + dy) * w + 2 * x + dx) * c + ch];
                acc = acc > 0 ? (acc + 2) / 4 : (acc - 2) / 4;
                out[(y * ow + x) * c + ch] = clamp8(acc, -128);
            }
}

static void global_avgpool(const int8_t *in, int h, int w, int c, int8_t *out)
{
    int32_t n = h * w;
    for (int ch = 0; ch < c; ch++) {
        int32_t acc = 0;
        for (int i = 0; i < n; i++) acc += in[i * c + ch];
        acc = acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
        out[ch] = clamp8(acc, -128);
    }
}
"""


def _kernels(used: set[str]) -> str:
    """The kernels the graph calls (an unused static function fails -Werror), with the
    helpers they need."""
    chunks = ["static " + chunk for chunk in _KERNEL_TEXT.split("\nstatic ") if chunk.strip()]
    need = set(used) | {"clamp8"} | ({"requantize"} if "conv" in used else set())
    keep = [c for c in chunks if re.match(r"static \w+ (\w+)\(", c).group(1) in need]
    return "\n" + "\n".join(chunk.strip("\n") + "\n" for chunk in keep)


def c_name(stem: str) -> str:
    """A C identifier from a file stem: 'trial52' -> 'trial52', '3-net' -> 'net_3_net'."""
    name = re.sub(r"\W", "_", stem).lower()
    return name if re.match(r"[a-z_]", name) else f"net_{name}"


def _array(ctype: str, name: str, values: np.ndarray) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    rows = [", ".join(flat[i:i + 16]) for i in range(0, len(flat), 16)]
    return f"static const {ctype} {name}[{len(flat)}] = {{\n    " + ",\n    ".join(rows) + "\n};\n"


def c_source(graph: Int8Graph, name: str) -> tuple[str, str]:
    """(header, source) of `graph` as C; `name` prefixes every exported symbol."""
    upper = name.upper()
    sizes = graph.tensor_bytes()
    arena = graph.peak_bytes()
    h, w, c = graph.input_shape
    header = (f"/* {name}: a full-int8 network written by nas-mnist export --format c. */\n"
              f"#ifndef {upper}_H\n#define {upper}_H\n\n#include <stdint.h>\n\n"
              f"#define {upper}_INPUT_BYTES {sizes[0]}  /* {h} x {w} x {c}, row-major */\n"
              f"#define {upper}_CLASSES {graph.classes}\n"
              f"#define {upper}_ARENA_BYTES {arena}  /* static, inside {name}.c */\n\n"
              f"/* input: each pixel (0-255) minus 128; logits: int8, one per class.\n"
              f"   Returns the predicted class (the first of the largest logits). */\n"
              f"int {name}_predict(const int8_t input[{upper}_INPUT_BYTES], "
              f"int8_t logits[{upper}_CLASSES]);\n\n#endif\n")
    consts, calls, used = [], [], set()
    shape, zero = graph.input_shape, graph.input.zero
    ends = ["arena", f"arena + {upper}_ARENA_BYTES - {{size}}"]  # even tensors low, odd high
    for i, op in enumerate(graph.ops):
        src = ends[i % 2].format(size=sizes[i])
        dst = ends[(i + 1) % 2].format(size=sizes[i + 1])
        (ih, iw, ic), (oh, ow, oc) = shape, op.shape
        if op.kind in ("conv", "depthwise"):
            # a depthwise conv is the conv with one group per channel: its (1, k, k, C)
            # weights laid out as (C, k, k, 1)
            weight = op.weight.transpose(3, 1, 2, 0) if op.kind == "depthwise" else op.weight
            groups = ic if op.kind == "depthwise" else op.groups
            consts += [_array("int8_t", f"w{i}", weight), _array("int32_t", f"b{i}", op.bias),
                       _array("int32_t", f"m{i}", op.multiplier),
                       _array("int8_t", f"s{i}", op.shift)]
            calls.append(f"conv({src}, {ih}, {iw}, {ic}, {zero}, w{i}, b{i}, m{i}, s{i}, "
                         f"{dst}, {oh}, {ow}, {oc}, {op.k}, {op.pad}, {groups}, "
                         f"{op.out.zero}, {op.act_range[0]});")
        elif op.kind in ("maxpool", "avgpool2"):
            kernel = "maxpool2" if op.kind == "maxpool" else "avgpool2"
            calls.append(f"{kernel}({src}, {iw}, {ic}, {dst}, {oh}, {ow});")
        else:
            calls.append(f"global_avgpool({src}, {ih}, {iw}, {ic}, {dst});")
        used.add(calls[-1].split("(")[0])
        shape, zero = op.shape, op.out.zero
    last = ends[len(graph.ops) % 2].format(size=sizes[-1])
    body = "\n    ".join(calls)
    source = (f"/* {name}: a full-int8 network written by nas-mnist export --format c.\n"
              f"   Integer arithmetic of TFLite's reference kernels; no malloc. */\n"
              f'#include "{name}.h"\n\n'
              + "".join(consts) + _kernels(used) +
              f"\nstatic int8_t arena[{upper}_ARENA_BYTES];\n\n"
              f"int {name}_predict(const int8_t input[{upper}_INPUT_BYTES], "
              f"int8_t logits[{upper}_CLASSES])\n{{\n"
              f"    int best = 0;\n"
              f"    for (int i = 0; i < {upper}_INPUT_BYTES; i++) arena[i] = input[i];\n"
              f"    {body}\n"
              f"    for (int i = 0; i < {upper}_CLASSES; i++) {{\n"
              f"        logits[i] = ({last})[i];\n"
              f"        if (logits[i] > logits[best]) best = i;\n"
              f"    }}\n"
              f"    return best;\n}}\n")
    return header, source


def compiler() -> str:
    """The system C compiler ($CC, else cc, gcc or clang on PATH)."""
    for candidate in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    raise DeployError("--format c checks the source by compiling it: no C compiler found "
                      "(set CC, or install cc, gcc or clang)")


_HARNESS = r"""
#include <stdio.h>
#include "{name}.h"
int main(void)
{{
    int8_t image[{upper}_INPUT_BYTES], logits[{upper}_CLASSES];
    while (fread(image, 1, sizeof image, stdin) == sizeof image) {{
        {name}_predict(image, logits);
        fwrite(logits, 1, sizeof logits, stdout);
    }}
    return 0;
}}
"""


def check_c(header: str, source: str, name: str, q: np.ndarray) -> dict:
    """Compile the source (-Wall -Wextra -Werror), run it on int8 images `q` (N, H, W, C) and
    return its logits with the flash and RAM the object file takes (`size`, compiled -Os)."""
    cc = compiler()
    with tempfile.TemporaryDirectory(prefix="nas-mnist-c-") as work:
        work = Path(work)
        (work / f"{name}.h").write_text(header)
        (work / f"{name}.c").write_text(source)
        (work / "main.c").write_text(_HARNESS.format(name=name, upper=name.upper()))
        run = work / "run"
        for args in ([cc, *CFLAGS, "-o", str(run), f"{name}.c", "main.c"],
                     [cc, *CFLAGS, "-Os", "-c", "-o", f"{name}.o", f"{name}.c"]):
            done = subprocess.run(args, cwd=work, capture_output=True, text=True)
            if done.returncode:
                first = (done.stderr.strip().splitlines() or ["(no message)"])[0]
                raise DeployError(f"the C source does not compile with {Path(cc).name}: {first}")
        out = subprocess.run([str(run)], input=np.ascontiguousarray(q).tobytes(),
                             capture_output=True, check=True).stdout
        sizes = _size(work / f"{name}.o")
    logits = np.frombuffer(out, np.int8).reshape(len(q), -1)
    return {"logits": logits, "compiler": Path(cc).name, **sizes}


def _size(obj: Path) -> dict:
    """text (code + const weights), data and bss (the arena) of an object file, from `size`."""
    tool = shutil.which("size")
    if tool is None:
        return {}
    fields = subprocess.run([tool, str(obj)], capture_output=True, text=True,
                            check=True).stdout.splitlines()[1].split()
    text, data, bss = (int(v) for v in fields[:3])
    return {"flash_bytes": text + data, "ram_bytes": data + bss, "size_text": text,
            "size_data": data, "size_bss": bss}
