"""Atomic outputs: a stage writes into a temporary sibling folder that is renamed into place only
when everything is written, so a crash never leaves a half-written output and a rerun is idempotent.

Guarantees (each has a fault-injection test in ``tests/test_io.py``):
- A process killed inside :func:`atomic_dir` leaves the previous output (or no output) and only a
  hidden ``.NAME.tmp-PID@HOST-*`` folder, which the next run for the same output removes.
- A write that fails because the disk is full (``ENOSPC``, ``EDQUOT``, ``EFBIG``) removes the partial
  folder, keeps the previous output and raises a :class:`RerecError` that says so.
- A crash between the two renames of a replacement (old output moved aside, new one not yet in place)
  is repaired by the next run: the previous output is moved back.
- Files are fsynced before the rename, so the renamed output is on disk, not only in the page cache.

Single files (checkpoints, metrics) go through :func:`atomic_write_bytes`, :func:`atomic_write_text` or
:func:`atomic_save_torch`: temp file in the same folder, fsync, rename.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from rerec.errors import RerecError

log = logging.getLogger(__name__)

#: errno values that mean "no room to write": the disk, a quota, or a file-size limit.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: A temp folder of another host (another pod on a shared volume) is stale after this many seconds.
STALE_FOREIGN_TMP_S = float(os.environ.get("REREC_STALE_TMP_S", 6 * 3600))

_HOST = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:40] or "host"
_ACTIVE: set[Path] = set()  # temp folders this process is writing right now
_OWNER = re.compile(r"^(?P<pid>\d+)@(?P<host>[A-Za-z0-9_.-]+)-")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _is_stale(path: Path, marker: str) -> bool:
    """Whether a hidden ``.NAME.{marker}-...`` sibling was left by a process that is gone."""
    if path.resolve() in _ACTIVE:
        return False
    owner = _OWNER.match(path.name.split(f".{marker}-", 1)[-1])
    if owner and owner["host"] == _HOST:
        pid = int(owner["pid"])
        return pid == os.getpid() or not _pid_alive(pid)  # our own pid but not in _ACTIVE: a past life
    try:  # another host, or a name from an older rerec: judge by age
        return time.time() - path.lstat().st_mtime > STALE_FOREIGN_TMP_S
    except FileNotFoundError:
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def clean_stale(out: str | os.PathLike) -> list[Path]:
    """Remove what a killed run left next to ``out``; restore ``out`` if a crash lost it mid-swap.

    Returns the removed paths. Safe to call while other processes write other outputs in the folder,
    and while another live process writes the same ``out`` (its temp folder is not stale).
    """
    out = Path(out)
    if not out.parent.is_dir():
        return []
    removed = []
    olds = sorted(out.parent.glob(f".{glob_escape(out.name)}.old-*"), key=lambda p: p.lstat().st_mtime)
    for old in olds:
        if not _is_stale(old, "old"):
            continue
        if not out.exists() and old.is_dir():
            os.replace(old, out)  # killed between the two renames: the previous output comes back
            log.warning("restored %s from %s left by a killed run", out, old.name)
        else:
            _remove(old)
            removed.append(old)
    for tmp in out.parent.glob(f".{glob_escape(out.name)}.tmp-*"):
        if _is_stale(tmp, "tmp"):
            _remove(tmp)
            removed.append(tmp)
    if removed:
        log.info("removed %d stale temporary path(s) next to %s", len(removed), out)
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def disk_full_cause(exc: BaseException | None) -> OSError | None:
    """The ``OSError`` meaning "no room" behind ``exc``, if any. torch.save, for one, reports a full
    disk as a ``RuntimeError`` from its zip writer whose ``__context__`` is the real ``OSError``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


# torch.save(obj, "file.pt") writes through C++ streams that drop the errno: a full disk arrives as
# RuntimeError("... basic_ios::clear: iostream error") or "PytorchStreamWriter failed writing file".
_OPAQUE_WRITE_ERRORS = ("iostream error", "PytorchStreamWriter failed", "unexpected pos")
#: Free space below which an opaque write error is taken for a full volume.
LOW_SPACE_BYTES = 64 << 20


def _volume_full(exc: BaseException, folder: Path) -> OSError | None:
    """A full-volume ``OSError`` for a write error without an errno, when the volume is (nearly) full.
    Checked before the partial output is deleted, while the space it took is still used."""
    if not isinstance(exc, RuntimeError) or not any(s in str(exc) for s in _OPAQUE_WRITE_ERRORS):
        return None
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if free < LOW_SPACE_BYTES else None


def write_full_cause(exc: BaseException, folder: str | os.PathLike) -> OSError | None:
    """The "no room" ``OSError`` behind a failed write into ``folder``: an errno of :data:`DISK_FULL_ERRNOS`
    anywhere in the chain, or torch's errno-less stream error on a (nearly) full volume. For writers that
    cannot go through :func:`atomic_dir` (e.g. the HF Trainer's checkpoints)."""
    return disk_full_cause(exc) or _volume_full(exc, Path(folder))


def _disk_full_error(exc: OSError, target: Path, kept: str) -> RerecError:
    return RerecError(
        f"No space left while writing {target} ({os.strerror(exc.errno or errno.ENOSPC)}); "
        f"the partial output was removed and {kept}. "
        f"Fix: free space on the volume of {target.parent} (or raise its quota / PVC size), "
        "or point the output at a larger volume, then rerun."
    )


def _unwritable_error(out: Path, exc: OSError) -> RerecError:
    full = disk_full_cause(exc)
    if full is not None:
        return _disk_full_error(full, out, "nothing was written")
    return RerecError(f"Cannot write the output {out}: {exc.strerror or exc} ({out.parent}). "
                      "Fix: choose an output path in a folder you can write to (or fix its permissions).")


def _check_output_path(out: Path) -> None:
    """Refuse, before writing, an output path that can never be a folder."""
    if not out.name or out.name in (".", ".."):
        raise RerecError(f"'{out}' cannot be an output folder. Fix: name a folder, e.g. out/data.")
    for parent in [out.parent, *out.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise RerecError(f"Cannot create the output {out}: {parent} is a file, not a folder. "
                                 "Fix: choose another output path.")
            break
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable_error(out, exc) from exc
    if out.exists() and not out.is_dir():
        raise RerecError(f"The output {out} exists and is a file, not a folder, so it was not replaced. "
                         "Fix: remove it or choose another output path.")


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``out`` on success and vanishes on failure.

    Stale temporary folders of killed runs for the same ``out`` are removed first. ``fsync=False``
    skips flushing the files to disk before the rename (only for throw-away outputs).
    """
    out = Path(out)
    _check_output_path(out)
    clean_stale(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}@{_HOST}-", dir=out.parent))
    except OSError as exc:
        raise _unwritable_error(out, exc) from exc
    _ACTIVE.add(tmp.resolve())
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700; artifacts are read by other users (KFP, MLflow)
    try:
        try:
            yield tmp
            if fsync:
                _fsync_tree(tmp)
        except BaseException as exc:
            full = disk_full_cause(exc) or _volume_full(exc, out.parent)
            shutil.rmtree(tmp, ignore_errors=True)
            if full is not None:  # also a RerecError of atomic_save_torch inside: name the output
                kept = "the previous output is unchanged" if out.exists() else "no output was written"
                raise _disk_full_error(full, out, kept) from exc
            raise
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}@{_HOST}-", dir=out.parent))
            _ACTIVE.add(old.resolve())
            os.replace(out, old)  # a folder replaces an empty folder atomically
        os.replace(tmp, out)
        if fsync:
            _fsync_dir(out.parent)
        if old is not None:
            _remove(old)
            _ACTIVE.discard(old.resolve())
    finally:
        _ACTIVE.discard(tmp.resolve())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temp file next to ``path``; on success it is fsynced and renamed onto ``path``.

    On any failure the temp file is removed and ``path`` keeps its previous content; running out of
    space raises a :class:`RerecError` that says so.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}@{_HOST}-", dir=path.parent)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        full = disk_full_cause(exc)
        if full is not None and not isinstance(exc, RerecError):
            kept = "the previous file is unchanged" if path.exists() else "no file was written"
            raise _disk_full_error(full, path, kept) from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_file(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_save_torch(obj: Any, path: str | os.PathLike, *, save: Callable[[Any, IO[bytes]], None] | None = None) -> Path:
    """``torch.save(obj, path)`` that never leaves a truncated file: temp file, fsync, rename.

    Use it for checkpoints written outside an :func:`atomic_dir` (e.g. in a folder that accumulates
    checkpoints), so that a kill or a full disk keeps the previous checkpoint loadable. Load the result
    with ``torch.load(path, weights_only=True)``.
    """
    import torch

    save = save or torch.save
    with atomic_file(path, "wb") as f:
        save(obj, f)
    return Path(path)


def write_json(path: str | os.PathLike, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_sha256(root: str | os.PathLike) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root``: equal dicts mean byte-identical trees."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}
