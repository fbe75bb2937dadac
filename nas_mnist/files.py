"""Files the user keeps. Every write is all or nothing (a temporary file beside the target, then
a rename), a failure names the file the user asked for (never a temporary one), and no
temporary file or folder survives a failure."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from nas_mnist.errors import NasMnistError


class FileWriteError(NasMnistError, OSError):
    """A file the user asked for could not be written; the message names it."""


def _why(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


class FileReadError(NasMnistError, ValueError):
    """An input file that cannot be read as one: missing, a folder, not a regular file (a FIFO
    or a device), or larger than its kind allows. The message names the file."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | Path, what: str = "file"):
    """A binary file object of `path` if it is a regular file (after symlinks), else
    FileReadError naming what it is. Opened without blocking, so a FIFO is refused at once
    instead of waiting for a writer; what is read is the file opened, not one checked
    before (no stat-then-open race)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileReadError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise FileReadError(f"{what} {path} is a folder") from None
    except OSError as err:
        if err.errno == 40:  # ELOOP
            raise FileReadError(f"{what} {path} is a symbolic link loop") from None
        raise FileReadError(f"cannot read {what} {path}: {_why(err)}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise FileReadError(f"{what} {path} is {_kind(mode)}, not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_bounded(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes, bounded by what is read (a size
    from stat() says nothing about /dev/zero or a file that grows)."""
    with open_regular(path, what) as f:
        try:
            data = f.read(limit + 1)
        except OSError as err:
            raise FileReadError(f"cannot read {what} {path}: {_why(err)}") from None
    if len(data) > limit:
        raise FileReadError(f"{what} {path} is larger than {limit:,} bytes")
    return data


def read_text_bounded(path: str | Path, limit: int, what: str = "file") -> str:
    """As read_bounded, decoded as UTF-8 (FileReadError if it is not)."""
    data = read_bounded(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FileReadError(f"{what} {path} is not UTF-8 text ({err.reason} at byte "
                            f"{err.start})") from None


def check_writable(path: str | Path, what: str = "") -> Path:
    """Fail now, in one line, if `path` cannot become a file (a folder, a missing or read-only
    parent) - before long work whose result would be lost."""
    path = Path(path)
    label = f"{what} {path}".strip()
    if path.is_dir():
        raise FileWriteError(f"{label} is a folder; give a file name")
    if not path.parent.is_dir():
        raise FileWriteError(f"cannot write {label}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise FileWriteError(f"cannot write {label}: folder {path.parent} is not writable")
    return path


def atomic_write(dest: str | Path, write: Callable[[str], object]) -> Path:
    """`write(tmp)` fills a temporary file beside `dest` (its name ends in `dest`'s name, so a
    reader that goes by the suffix sees the format), then it replaces `dest`: never a
    half-written file. An OSError becomes a FileWriteError naming `dest`."""
    dest = Path(dest)
    if dest.is_dir():
        raise FileWriteError(f"cannot write {dest}: a folder of that name is in the way")
    try:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".", suffix=f".tmp-{dest.name}")
    except OSError as err:
        raise FileWriteError(f"cannot write {dest}: {_why(err)}") from err
    try:
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a kept file, not a private temporary one
        write(tmp)
        os.replace(tmp, dest)
    except OSError as err:
        raise FileWriteError(f"cannot write {dest}: {_why(err)}") from err
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def write_text(dest: str | Path, text: str) -> Path:
    return atomic_write(dest, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_bytes(dest: str | Path, data: bytes) -> Path:
    return atomic_write(dest, lambda tmp: Path(tmp).write_bytes(data))


def copy_file(src: str | Path, dest: str | Path) -> Path:
    return atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp))


@contextlib.contextmanager
def made_folder(folder: Path) -> Iterator[Path]:
    """Create `folder` (and its parents) for the block; if the block fails and the folder it
    made is still empty, remove it: a refused or failed command leaves nothing behind."""
    missing = []
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        missing.append(parent)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FileWriteError(f"cannot create folder {folder}: {_why(err)}") from err
    try:
        yield folder
    except BaseException:
        for made in missing:  # innermost first; stops at the first that is not empty
            try:
                made.rmdir()
            except OSError:
                break
        raise


_STAGE_MARK = "~stage~"  # .<label>~stage~<host>~<pid>~<random>: whose staging folder it is


def _owner_gone(name: str) -> bool:
    parts = name.split("~")
    try:
        host, pid = parts[-3], int(parts[-2])
    except (IndexError, ValueError):
        return False
    if host != socket.gethostname():
        return False  # another machine's: not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_dead_stages(out: Path) -> None:
    """Staging folders left in `out` by a process killed with SIGKILL (no `finally` ran)."""
    for stage in out.glob(f".*{_STAGE_MARK}*"):
        if stage.is_dir() and _owner_gone(stage.name):
            shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def staged(out: Path, label: str) -> Iterator[Path]:
    """A hidden folder inside `out` to write a set of files into; `publish(stage, names)` moves
    them into `out` together. The folder is removed however the block ends, and one a killed
    process left is removed by the next call."""
    remove_dead_stages(out)
    try:
        stage = Path(tempfile.mkdtemp(
            dir=out, prefix=f".{label}{_STAGE_MARK}{socket.gethostname()}~{os.getpid()}~"))
    except OSError as err:
        raise FileWriteError(f"cannot write into {out}: {_why(err)}") from err
    try:
        yield stage
    except FileWriteError as err:  # name the file the user will look for, not the staged one
        raise FileWriteError(str(err).replace(str(stage), str(out))) from err
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def check_names_free(out: Path, names: list[str]) -> None:
    """Refuse, before any work, a file name in `out` that a folder already takes."""
    for name in names:
        if (out / name).is_dir():
            raise FileWriteError(f"cannot write {out / name}: a folder of that name is in the way")


def publish(stage: Path, names: list[str], out: Path) -> None:
    """Move the staged files into `out` (renames in one file system: no space needed). A name
    taken by a folder is refused before any file moves."""
    check_names_free(out, names)
    for name in names:
        try:
            os.replace(stage / name, out / name)
        except OSError as err:
            raise FileWriteError(f"cannot write {out / name}: {_why(err)}") from err
