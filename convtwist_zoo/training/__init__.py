"""Training, one concern a file: `config` (the knobs, validated), `schedule` (optimizer, lr set at every step),
`step_timing` (the reference steps a run times to set its wall time against),
`checkpoint` (``last.pt``: save, check, resume), `outputs` (the run folder and its final files), `loop` (`train`)."""
from .config import KNOB_RANGES, RECIPE_KNOBS, TrainConfig
from .loop import train

__all__ = ["TrainConfig", "train", "KNOB_RANGES", "RECIPE_KNOBS"]
