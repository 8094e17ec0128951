"""What machine this is, from ``/proc/cpuinfo``: one reader for the run configs (``trained_on``), the fused kernels'
build key, the benchmarks' host line and whether bf16 is native; and `ActiveClock`, the seconds a run really ran."""
from __future__ import annotations

import threading
import time
from pathlib import Path


def cpuinfo_fields(text: str | None = None) -> dict[str, str]:
    """The first processor's ``key: value`` fields of ``/proc/cpuinfo`` (or of ``text``); {} where it cannot be read."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux
            return {}
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:  # the first processor's block ended
                break
            continue
        if ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def cpu_name(fields: dict[str, str]) -> str:
    """The processor's model, and its bf16 instructions where it has them (AMX, else AVX512-BF16): CPUs that share a
    model name train at very different speeds with and without them (``bench/precision.py``), so the name alone
    would make their train times look alike."""
    model = " ".join(fields.get("model name", "").replace("(R)", "").replace("(TM)", "").split())
    flags = set(fields.get("flags", "").split())
    bf16 = "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else ""
    return ", ".join(part for part in (model, bf16) if part)


# x86 (AMX, AVX512-BF16, AVX-NE-CONVERT) and Arm (BF16) features with which oneDNN computes bf16 natively
BF16_FLAGS = {"amx_bf16", "avx512_bf16", "avx_ne_convert", "bf16"}


def has_native_bf16(fields: dict[str, str]) -> bool:
    """Whether the CPU computes bf16 in hardware: elsewhere bf16 is emulated and autocast training runs several times
    slower than fp32 (``bench/precision.py``). ``fields``: `cpuinfo_fields` (x86 ``flags``, Arm ``Features``); an
    unreadable cpuinfo counts as native, so that nothing warns on a machine we cannot see into."""
    flags = fields.get("flags", fields.get("Features"))
    return flags is None or bool(BF16_FLAGS & set(flags.split()))


class ActiveClock:
    """Seconds since the start that leave out the time the process sat stopped (Ctrl-Z, ``kill -STOP``), so a run
    that was paused still reports how fast it trains.

    A daemon thread wakes every ``tick`` seconds; when a wake-up comes more than ``gap`` seconds late, the process was
    not running, and the lateness counts as paused. Pauses shorter than ``gap`` count as running.

    Args:
        tick: seconds between the thread's wake-ups.
        gap: lateness (seconds) from which a wake-up counts as a pause.

    Example:
        >>> with ActiveClock() as clock:
        ...     pass
        >>> clock.seconds() >= 0 and clock.paused == 0.0
        True
    """

    def __init__(self, tick: float = 0.25, gap: float = 3.0):
        self.tick, self.gap = tick, gap
        self.paused = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="active-clock", daemon=True)

    def __enter__(self) -> "ActiveClock":
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._end = self.seconds()
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            late = now - last - self.tick
            if late > self.gap:
                with self._lock:
                    self.paused += late
            last = now

    def seconds(self) -> float:
        """Seconds since entering, less the pauses seen so far (after exit: the span's final value)."""
        if hasattr(self, "_end"):
            return self._end
        with self._lock:
            return time.monotonic() - self._t0 - self.paused
