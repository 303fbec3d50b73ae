"""Output files that never overwrite and never escape their folder.

``unique_path`` picks the next free ``prefix_00001_.ext`` name (the counter ComfyUI's save nodes use),
``atomic_output`` writes to a temporary name in the destination folder and renames it into place
only when the writer succeeded, and ``safe_join`` refuses relative paths that leave their root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import uuid
from pathlib import Path
from typing import Iterator

from vssflow_core.errors import VSSFlowError

__all__ = ["unique_path", "atomic_output", "safe_join", "write_failed", "NO_ROOM"]

# errno values of a write that ran out of room: a full disk, a quota, a file-size limit (ulimit -f)
NO_ROOM = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)


def safe_join(root: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """Join ``relative`` under ``root`` and refuse results outside ``root``.

    Absolute paths, ``..`` components and symlinks that point out of ``root`` are refused with a
    VSSFlowError. Returns the joined path (``root`` itself for an empty ``relative``).
    """
    root_path = Path(root)
    rel = os.fspath(relative)
    if "\x00" in rel:
        raise VSSFlowError(f"path {rel!r} contains a NUL character; use a plain file name")
    if rel in ("", "."):
        return root_path
    rel_path = Path(rel)
    if rel_path.is_absolute() or rel_path.drive or rel.startswith(("/", "\\")):
        raise VSSFlowError(
            f"path {rel!r} is absolute; expected a path relative to {root_path} (e.g. 'video/VSSFlow')"
        )
    if any(part == ".." for part in re.split(r"[\\/]+", rel)):
        raise VSSFlowError(f"path {rel!r} contains '..' and would leave {root_path}; remove the '..'")
    joined = root_path / rel_path
    root_real = os.path.realpath(root_path)
    joined_real = os.path.realpath(joined)
    if os.path.commonpath([root_real, joined_real]) != root_real:
        raise VSSFlowError(
            f"path {rel!r} resolves to {joined_real}, outside {root_real} (a symlink?); "
            f"choose a folder inside {root_real}"
        )
    return joined


def unique_path(directory: str | os.PathLike, prefix: str, ext: str) -> Path:
    """Return ``directory/prefix_NNNNN_.ext`` with the next unused counter (ComfyUI save-node style).

    ``prefix`` may contain sub-folders (``"video/VSSFlow"``); they are created inside ``directory``
    and may not escape it. The counter is one more than the largest one present (00001 first).
    """
    ext = ext.lstrip(".")
    if not ext or "/" in ext or "\\" in ext:
        raise VSSFlowError(f"file extension {ext!r} is not valid; expected e.g. 'mp4' or 'wav'")
    if not prefix or prefix.endswith(("/", "\\")):
        raise VSSFlowError(f"file name prefix {prefix!r} has no file name part; expected e.g. 'video/VSSFlow'")
    target = safe_join(directory, prefix)
    folder, stem = target.parent, target.name
    folder.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(re.escape(stem) + r"_(\d+)_\." + re.escape(ext) + r"$")
    counters = [int(m.group(1)) for name in os.listdir(folder) if (m := pattern.match(name))]
    counter = max(counters, default=0) + 1
    while True:
        candidate = folder / f"{stem}_{counter:05d}_.{ext}"
        if not candidate.exists():
            return candidate
        counter += 1


def _move_no_clobber(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, failing if ``dst`` exists. Where the file system has hard links
    (every local Linux and macOS one) this is atomic: the link fails if ``dst`` appeared. Without
    them (some network or FAT volumes) it checks, then renames: Python has no atomic no-clobber
    rename there, so a file made in the instant between the two would be replaced."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise VSSFlowError(f"output file {dst} appeared while writing; not overwriting it, pick another name") from None
    except OSError:  # file system without hard links: check, then rename
        if dst.exists():
            raise VSSFlowError(f"output file {dst} already exists; not overwriting it, pick another name") from None
        os.replace(src, dst)
        return
    os.unlink(src)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Context manager yielding a temporary path next to ``path``; renamed to ``path`` on success.

    The temporary name keeps the extension (so PyAV and soundfile pick the format from it). An
    existing ``path`` is refused before and after writing, unless ``replace`` (files the pack owns
    and rewrites: checkpoints, shards, reports), which swaps the new file in with one rename. On an
    exception (a writer error, a full disk) the temporary file is removed and ``path`` is left as
    it was; an ``OSError`` that says the disk is full becomes :func:`write_failed`'s one-line error.
    """
    final = Path(path)
    if final.exists() and not replace:
        raise VSSFlowError(
            f"output file {final} already exists; not overwriting it, choose a new name (see unique_path)"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.stem}.{uuid.uuid4().hex[:8]}.tmp{final.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise VSSFlowError(f"writer produced no file for {final}")
        if replace:
            os.replace(tmp, final)
        else:
            _move_no_clobber(tmp, final)
    except OSError as e:
        if e.errno in NO_ROOM:
            raise write_failed(final, e) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def lock_folder(folder: str | os.PathLike, busy: str, fix: str = "", wait: bool = False):
    """Create ``folder`` and hold an exclusive lock on ``folder/.lock``; returns the open lock file
    (the lock lasts until it is closed or the process ends).

    Held by another process: ``wait`` False raises VSSFlowError("``busy`` (pid N); ``fix``"); ``wait``
    True prints "``busy`` (pid N); waiting for it" once on stderr and blocks until the other process
    is done. Where ``fcntl`` is missing (Windows) nothing is locked and a warning names the folder.
    """
    import sys

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".lock", "a+", encoding="utf-8")
    try:
        import fcntl
    except ImportError:
        print(f"warning: no file locks on this system; do not run two commands on {folder} at once", file=sys.stderr)
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        if not wait:
            handle.close()
            raise VSSFlowError(f"{busy} ({owner}); {fix}") from None
        print(f"{busy} ({owner}); waiting for it", file=sys.stderr, flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def write_failed(path: str | os.PathLike, cause: BaseException) -> VSSFlowError:
    """The one-line error for a write of ``path`` that failed with ``cause`` (a full disk, a quota or
    a file-size limit, as the message suggests; writers such as ``torch.save`` do not say which)."""
    first = (str(cause).splitlines() or [type(cause).__name__])[0][:200]
    return VSSFlowError(f"cannot write {path} ({first}); is the disk full? Free space (or raise the file-size "
                        "limit), then run the same command again")
