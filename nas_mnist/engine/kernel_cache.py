"""The one place that builds, caches and loads the C++ kernels (engine.kernels).

torch's own cache (`load_inline` into ~/.cache/torch_extensions/<name>) has three faults that
each stopped every training command on a machine: a process killed mid-build leaves torch's
`lock` file and every later build waits on it forever; two installs of the project (two venvs)
share the folder and rebuild over each other, because the build flags name each venv's torch;
and a cached `.so` cut short is mapped as it is, so the first call dies of SIGBUS.

So the kernels live in a folder of the project's own, one sub-folder per build key (the C++
source, torch's version and install path, Python's version, the compiler flags): two venvs get
two folders. A build runs in a private staging folder and is moved in whole with one rename,
beside a manifest holding the `.so`'s SHA-256; a load checks that hash before the file is
mapped, and a cache entry that fails it (or fails to load) is removed and rebuilt once. The
build lock is a file naming its owner (pid and host): a lock whose owner is gone is taken over,
and a live owner is waited for at most `WAIT_SECONDS`, after which this process builds aside.
Nothing here can wait without bound.

Where: $NAS_MNIST_KERNEL_DIR, else $XDG_CACHE_HOME/nas-mnist/kernels (~/.cache/...), else (a
read-only home) a folder under the temporary directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

WAIT_SECONDS = 180.0  # the longest a process waits for another one's build (one takes ~30 s)
_POLL_SECONDS = 0.5
_MANIFEST = "manifest.json"


class KernelCacheError(RuntimeError):
    """The kernels cannot be built or loaded; the caller falls back to plain PyTorch."""


def cache_root() -> Path:
    """The folder holding every build of the kernels (see the module's docstring)."""
    if os.environ.get("NAS_MNIST_KERNEL_DIR"):
        return Path(os.environ["NAS_MNIST_KERNEL_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nas-mnist" / "kernels"


def build_key(source: str, cflags: list[str]) -> str:
    """What makes one build differ from another: the source, the torch it links against
    (version and install path: one venv's build never serves another's), Python, flags."""
    import torch
    parts = [source, torch.__version__, str(Path(torch.__file__).resolve().parent),
             sys.version, " ".join(cflags)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _owner_alive(text: str) -> bool:
    """Whether the process named by a lock file ("pid host") still runs. A lock of another
    host (a shared home) is trusted until it is older than WAIT_SECONDS (see _take_lock)."""
    try:
        pid_text, host = text.split()[:2]
        pid = int(pid_text)
    except ValueError:
        return False  # a torn or foreign lock file: nobody owns it
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _take_lock(lock: Path) -> bool:
    """Take the build lock; False while a live owner holds it. A dead owner's lock (or one
    older than WAIT_SECONDS from another host) is removed and taken over."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                text = lock.read_text(errors="replace")
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile: try again
            if _owner_alive(text) and age < WAIT_SECONDS * 4:
                return False
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as out:
            out.write(f"{os.getpid()} {socket.gethostname()} {time.time():.0f}\n")
        return True
    return False


def _remove_stale_staging(root: Path) -> None:
    """Staging folders (".build-<pid>-<host>-...") whose builder is gone."""
    for staging in root.glob(".build-*"):
        parts = staging.name.split("-")
        owner = f"{parts[1]} {parts[2]}" if len(parts) > 3 else ""
        if not _owner_alive(owner):
            shutil.rmtree(staging, ignore_errors=True)


def _import(name: str, so_path: Path):
    spec = importlib.util.spec_from_file_location(name, so_path)
    if spec is None or spec.loader is None:
        raise KernelCacheError(f"{so_path} is not a loadable module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _verified(entry: Path, name: str) -> Path | None:
    """The `.so` of a cache entry whose manifest hash matches its bytes, else None."""
    so_path = entry / f"{name}.so"
    try:
        manifest = json.loads((entry / _MANIFEST).read_text())
        if manifest.get("sha256") == _sha256(so_path):
            return so_path
    except (OSError, ValueError, AttributeError):
        pass
    return None


def _discard(entry: Path) -> None:
    """Remove a cache entry: renamed aside first, so no reader ever sees it half gone."""
    if not entry.exists():
        return
    aside = entry.with_name(f".discard-{entry.name}-{os.getpid()}")
    try:
        entry.rename(aside)
    except OSError:
        aside = entry
    shutil.rmtree(aside, ignore_errors=True)


def _build(root: Path, entry: Path, name: str, build: Callable[[Path], object],
           say: Callable[[str], None]):
    """Build into a staging folder, write the manifest, move it in whole. Returns the module
    the build loaded."""
    staging = Path(tempfile.mkdtemp(prefix=f".build-{os.getpid()}-{socket.gethostname()}-",
                                    dir=root))
    try:
        say("nas-mnist: building the CPU kernels for this machine (once, about 30 s)")
        staging.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        module = build(staging)
        so_path = staging / f"{name}.so"
        manifest = {"sha256": _sha256(so_path), "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "python": sys.version.split()[0]}
        (staging / _MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
        try:
            staging.rename(entry)  # atomic; fails if another process moved its build in first
        except OSError:
            pass
        return module
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_or_build(name: str, source: str, cflags: list[str], build: Callable[[Path], object],
                  say: Callable[[str], None] = lambda line: None):
    """The kernels' module: a verified cached build, else a fresh one (see the docstring).
    `build(folder)` compiles into `folder` and returns the loaded module. Raises
    KernelCacheError (or the build's own error) where neither works."""
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=root)
        probe.close()
    except OSError:
        fallback = Path(tempfile.gettempdir()) / f"nas-mnist-kernels-{os.getuid()}"
        say(f"nas-mnist: {root} is not writable; the kernels are cached in {fallback}")
        root = fallback
        root.mkdir(parents=True, exist_ok=True)
    entry = root / build_key(source, cflags)
    lock = root / f"{entry.name}.lock"
    deadline = time.monotonic() + WAIT_SECONDS
    said_wait = False
    while True:
        so_path = _verified(entry, name)
        if so_path is not None:
            try:
                return _import(name, so_path)
            except (ImportError, OSError) as err:
                say(f"nas-mnist: the cached kernels in {entry} cannot be loaded "
                    f"({printable(err)}); rebuilding them")
                _discard(entry)
                continue
        if entry.exists():  # an entry that fails its hash: cut short, scribbled on, foreign
            say(f"nas-mnist: the cached kernels in {entry} are damaged; rebuilding them")
            _discard(entry)
        if _take_lock(lock):
            try:
                _remove_stale_staging(root)
                return _build(root, entry, name, build, say)
            finally:
                lock.unlink(missing_ok=True)
        if time.monotonic() > deadline:
            say(f"nas-mnist: another process has been building the kernels for "
                f"{WAIT_SECONDS:.0f} s ({lock}); building a private copy")
            return _build(root, entry, name, build, say)
        if not said_wait:
            say(f"nas-mnist: waiting for another process building the kernels ({lock})")
            said_wait = True
        time.sleep(_POLL_SECONDS)


def printable(err: BaseException) -> str:
    """An error's first line, printable ASCII only (a dlopen error can quote binary bytes)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return text[:120]
