"""What machine this is, from ``/proc/cpuinfo``: one reader for the run configs (``trained_on``), the fused kernels'
build key and the benchmarks' host line."""
from __future__ import annotations

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
    """The processor's model, and AMX where it has it: two 2-core hosts of this project differ 2.2x in ConvTwist's
    bf16 step (AMX or not), so "2 cores" alone would make their train times look alike."""
    model = " ".join(fields.get("model name", "").replace("(R)", "").replace("(TM)", "").split())
    return ", ".join(part for part in (model, "AMX" if "amx_bf16" in fields.get("flags", "").split() else "") if part)
