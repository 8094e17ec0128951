"""One writer at a time: advisory file locks (``fcntl.flock``) for a run folder, a results file and the dataset cache.

A lock file holds the pid of its holder, so that a refusal can say who holds it. The lock goes with the process (and
the children it forked, which share it until they exit): a killed holder frees it, and nothing stale is left.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from ..errors import ZooError

__all__ = ["BusyError", "hold_lock", "process_alive"]


# how long a lock whose holder is dead may stay held (by that holder's forked children, e.g. DataLoader workers,
# which exit once they see their parent gone)
ORPHAN_GRACE_SECONDS = 30.0


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (someone else's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


class BusyError(ZooError, RuntimeError):
    """Another process holds the lock (its message says which, and what to do)."""


@contextlib.contextmanager
def hold_lock(lock_path: str | os.PathLike, wait: bool, busy: str = ""):
    """Hold the lock ``lock_path`` for the ``with`` block.

    Args:
        lock_path: the lock file (created with its folder).
        wait: block until the lock is free; False raises `BusyError` at once.
        busy: the refusal's message, formatted with ``{pid}`` (the holder's pid, or ``?``).

    Example:
        >>> with hold_lock("/tmp/run/.lock", wait=False, busy="pid {pid} is training into /tmp/run"):
        ...     pass
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip()
                # a killed holder's loader workers keep its lock until they notice and exit: wait for them
                if holder.isdigit() and not process_alive(int(holder)) and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                raise BusyError(busy.format(pid=holder or "?")) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield
