"""Load an MNIST-style IDX dataset once into tensors, verified and normalised.

The four files use the standard IDX names (gzipped or not). The packaged copy of MNIST is
checked against its published SHA-256; any other folder is checked for shape only, so that
other 28x28 IDX datasets work. Every load hashes what it read (66 ms for 55 MB on a 2-core
AMD EPYC, far less than reading it): a digest cache keyed on size and modification time
vouched for label files replaced with their mtime kept, so there is none.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from nas_mnist.errors import NasMnistError, SpecError
from nas_mnist.files import FileReadError, open_regular

PACKAGED_DIR = Path(__file__).resolve().parent.parent / "mnist"
SPLIT_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the decompressed MNIST files (LeCun, Cortes, Burges), see mnist/NOTICE.md.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
IDX_DTYPES = {0x08: np.uint8}


class DataError(NasMnistError, ValueError):
    """A data file is missing, corrupt or has the wrong shape."""


# 640 MiB decompressed: the largest IDX set torchvision knows (EMNIST byclass, 697,932
# training images, 547 MB) fits; a 4.6 MB gzip announcing 1.07 GB of images decoded to 6-9 GB
# of memory under the earlier 1 GiB cap.
MAX_IDX_BYTES = 640 << 20
# A file is decoded into bytes and then a float32 copy: refuse one that would need more than
# half the memory available now, before it is inflated.
DECODED_BYTES_PER_BYTE = 5
# torchvision's download layout, ROOT/<name>/raw/, accepted as --data-dir ROOT
TORCHVISION_SUBDIRS = ("MNIST/raw", "FashionMNIST/raw", "KMNIST/raw", "EMNIST/raw")


def resolve_data_dir(data_dir: Path) -> Path:
    """The folder holding the IDX files: `data_dir` itself or its torchvision subfolder."""
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"data_dir {data_dir} is a file, not a folder", params=("data_dir",))
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist")
    stem = SPLIT_FILES["train_images"]
    if any((data_dir / n).is_file() for n in (stem, stem + ".gz")):
        return data_dir
    for sub in TORCHVISION_SUBDIRS:
        if any((data_dir / sub / n).is_file() for n in (stem, stem + ".gz")):
            return data_dir / sub
    return data_dir  # _find names the missing file


def _find(data_dir: Path, stem: str) -> Path:
    """The file of `stem` (plain or .gz); a name that is there but is no regular file (a
    folder, a FIFO, a symlink loop) is named as such, not as missing."""
    for name in (stem, stem + ".gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    for name in (stem, stem + ".gz"):
        if os.path.lexists(data_dir / name):
            try:
                open_regular(data_dir / name, "data file").close()
            except FileReadError as err:  # says what it is
                raise DataError(str(err)) from None
    raise DataError(f"missing data file {data_dir / stem}[.gz]")


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux), None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def read_idx(path: Path) -> tuple[np.ndarray, bytes]:
    """Read one IDX file; return the array and the decompressed bytes.

    The header is read and checked first, then exactly the bytes it announces (at most
    MAX_IDX_BYTES): a gzip that inflates to gigabytes is refused before it is inflated."""
    try:
        raw_file = open_regular(path, "data file")
        with raw_file, (gzip.open(raw_file, "rb") if path.suffix == ".gz" else raw_file) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES:
                raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
            if head[3] == 0:
                raise DataError(f"{path}: the IDX header gives 0 dimensions (no array)")
            dims = f.read(4 * head[3])
            if len(dims) != 4 * head[3]:
                raise DataError(f"{path}: the IDX header is truncated")
            shape = tuple(int.from_bytes(dims[4 * i:4 * i + 4], "big") for i in range(head[3]))
            size = math.prod(shape)  # Python ints: numpy's int64 product wrapped to 0
            if size > MAX_IDX_BYTES:
                raise DataError(f"{path}: header says shape {shape}, {size:,} bytes once "
                                f"decompressed; a data file may hold at most "
                                f"{MAX_IDX_BYTES:,} (refused before inflating it)")
            free = _available_memory()
            if free is not None and size * DECODED_BYTES_PER_BYTE > free // 2:
                raise DataError(f"{path}: header says shape {shape}, which would take "
                                f"{size * DECODED_BYTES_PER_BYTE / 1e6:,.0f} MB of memory once "
                                f"decoded; {free / 1e6:,.0f} MB are available")
            body = f.read(size)
            extra = f.read(1)
    except FileReadError as err:
        raise DataError(str(err)) from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if len(body) != size or extra:
        raise DataError(f"{path} is truncated or padded: header says shape {shape}")
    raw = head + dims + body
    array = np.frombuffer(raw, dtype=np.uint8, offset=len(head) + len(dims)).reshape(shape)
    return array, raw


def _check_packaged(paths: dict[str, Path], digests: dict[str, str]) -> None:
    for key, path in paths.items():
        stem = SPLIT_FILES[key]
        if digests[key] != MNIST_SHA256[stem]:
            raise DataError(f"{path} fails its SHA-256 check (corrupt packaged MNIST file)")


@dataclass(frozen=True)
class Dataset:
    """Images as float tensors in [0, 1] (N, 1, H, W) and int64 labels, plus provenance.

    `eval_*` is what per-epoch accuracy is measured on: the test set, or the validation
    split held out of the training set. `mean`/`std` come from the training images used.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: float
    std: float
    eval_split: str  # "test" or "val"
    checksum: str  # SHA-256 over the four files' digests
    source: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    def check_fits(self, in_channels: int, image_size: int, num_classes: int) -> None:
        """Refuse a network that cannot take these images or predict these labels."""
        if self.image_shape != (in_channels, image_size, image_size):
            raise SpecError(f"the network takes {in_channels}x{image_size}x{image_size} images, "
                            f"the data set's are {'x'.join(map(str, self.image_shape))}")
        top = int(max(self.train_y.max(), self.test_y.max()))
        if top >= num_classes:
            raise SpecError(f"the network predicts {num_classes} classes, the data set has "
                            f"label {top}")

    def to(self, device: torch.device | str) -> "Dataset":
        move = {k: getattr(self, k).to(device) for k in
                ("train_x", "train_y", "eval_x", "eval_y", "test_x", "test_y")}
        return Dataset(**{**self.__dict__, **move})


def _stamp(folder: Path) -> tuple:
    """What the in-process cache of loaded arrays keys on besides the folder: each file's
    path, size, modification and change times (a file replaced in a notebook session is read
    again)."""
    stamp = []
    for stem in SPLIT_FILES.values():
        for name in (stem, stem + ".gz"):
            try:
                st = (folder / name).stat()
            except OSError:
                continue
            stamp.append((name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return tuple(stamp)


@lru_cache(maxsize=4)
def _load_arrays(data_dir: str, stamp: tuple = ()) -> tuple[dict[str, np.ndarray], str]:
    folder = Path(data_dir)
    paths = {key: _find(folder, stem) for key, stem in SPLIT_FILES.items()}
    arrays, digests = {}, {}
    for key, path in paths.items():
        arrays[key], raw = read_idx(path)
        digests[key] = hashlib.sha256(raw).hexdigest()
    if folder.resolve() == PACKAGED_DIR.resolve():
        _check_packaged(paths, digests)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if labels.ndim != 1:
            raise DataError(f"{paths[split + '_labels']} holds an array of shape "
                            f"{labels.shape}, not one label per image (an images file?)")
        if images.ndim != 3:
            raise DataError(f"{paths[split + '_images']} holds an array of shape "
                            f"{images.shape}, not images (N, H, W) (a labels file?)")
        if len(images) != len(labels):
            raise DataError(f"{split} images {images.shape} and labels {labels.shape} do not match")
        if len(images) == 0:
            raise DataError(f"the {split} files of {folder} hold no images")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError("train and test images have different sizes")
    checksum = hashlib.sha256("".join(digests[k] for k in SPLIT_FILES).encode()).hexdigest()
    return arrays, checksum


def load_dataset(data_dir: str | Path | None = None, *, val_split: int = 0, seed: int = 0,
                 limit_train: int | None = None, limit_eval: int | None = None) -> Dataset:
    """Load the four IDX files as tensors on the CPU.

    `val_split` K > 0 holds out K training images (chosen by `seed`) as the evaluation set.
    `limit_train`/`limit_eval` take the first images only (for tests and quick demos).
    """
    folder = resolve_data_dir(Path(data_dir)) if data_dir is not None else PACKAGED_DIR
    arrays, checksum = _load_arrays(str(folder.resolve()), _stamp(folder))
    train_x = torch.from_numpy(arrays["train_images"].copy()).unsqueeze(1).float().div_(255)
    train_y = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    test_x = torch.from_numpy(arrays["test_images"].copy()).unsqueeze(1).float().div_(255)
    test_y = torch.from_numpy(arrays["test_labels"].astype(np.int64))
    if not 0 <= val_split < len(train_x):
        raise DataError(f"val_split {val_split} leaves no training images "
                        f"(the data set has {len(train_x):,})", params=("val_split",))
    eval_split = "test"
    eval_x, eval_y = test_x, test_y
    if val_split:
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))
        eval_x, eval_y = train_x[order[:val_split]], train_y[order[:val_split]]
        train_x, train_y = train_x[order[val_split:]], train_y[order[val_split:]]
        eval_split = "val"
    if limit_train:
        train_x, train_y = train_x[:limit_train], train_y[:limit_train]
    if limit_eval:
        eval_x, eval_y = eval_x[:limit_eval], eval_y[:limit_eval]
    mean, std = _statistics(train_x)
    return Dataset(train_x, train_y, eval_x, eval_y, test_x, test_y, mean=mean, std=std,
                   eval_split=eval_split, checksum=checksum, source=str(folder))


def _statistics(train_x: torch.Tensor) -> tuple[float, float]:
    """Mean and std of the training images, on one thread: a float32 reduction splits its
    sum by thread, so the same data loaded before and after `set_threads` gave two means
    (the search loaded with 2 threads and trained with 1, `train` loaded with 1: trial 3 of a
    2,000-image study scored 29.20 % in the search and 29.40 % re-trained on its seed). One
    thread gives what the shipped winners were trained with (on full MNIST 1 and 2 threads
    agree)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return float(train_x.mean()), float(train_x.std())
    finally:
        torch.set_num_threads(before)


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """Write an unsigned-byte IDX file (gzipped when `gz`, with '.gz' appended)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path, raw = path.with_name(path.name + ".gz"), gzip.compress(raw)
    path.write_bytes(raw)
    return path


def write_subset(folder: Path, n_train: int, n_test: int, *, gz: bool = False,
                 source: Path = PACKAGED_DIR) -> Path:
    """Write the first images of a dataset as a smaller IDX dataset (demos, tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in SPLIT_FILES.items():
        array, _ = read_idx(_find(source, stem))
        write_idx(folder / stem, array[: n_train if key.startswith("train") else n_test], gz=gz)
    return folder


def describe_data(data: "Dataset") -> str:
    """'packaged MNIST' or the folder, with the checksum prefix: printed in every header."""
    name = ("packaged MNIST" if Path(data.source).resolve() == PACKAGED_DIR.resolve()
            else data.source)
    return f"data {name} (sha256 {data.checksum[:12]})"
