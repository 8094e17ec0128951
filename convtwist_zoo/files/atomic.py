"""Atomic file writes: write to a temporary file beside the target, then rename, so a crash never leaves a
half-written file under the real name. Writing to a symbolic link replaces its target, and an existing file keeps
its mode.

A temporary file is named ``.<target>.<pid>-<random>.tmp``. One left behind by a killed writer (whose process is
gone) is removed by the next write to the same target, so weights-sized leftovers do not pile up. A new file gets
the mode ``open()`` would give it (0666 less the umask), not the 0600 of a temporary file.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from pathlib import Path

from .locks import process_alive

__all__ = ["atomic_path", "write_text_atomic", "remove_stale_temporaries"]

# a temporary file without a pid in its name (an older layout) counts as stale after this long
_UNOWNED_STALE_SECONDS = 3600


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of earlier writes to ``path`` whose writer is gone; returns what was removed."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        owner = tmp.name[len(path.name) + 2:-len(".tmp")].split("-", 1)[0]
        try:
            stale = not process_alive(int(owner)) if owner.isdigit() else \
                time.time() - tmp.stat().st_mtime > _UNOWNED_STALE_SECONDS
            if stale and owner != str(os.getpid()):
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # another writer cleaned it first
            continue
    return removed


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``, on error it is removed. A
    symbolic link is written through (its target is replaced, the link stays), and a file that exists keeps its
    mode."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else _default_mode()
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
