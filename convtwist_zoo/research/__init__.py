"""Research on top of the zoo, off the user's load path (nothing in `layers`, `models`, `data`, `training`, `export`
imports it): the leaderboard protocol (`results` files, the `runner`, the lr `probes`, `statistics`, `tables`),
robustness over seeds (`robustness`) and the reference's flow experiment (`flow`). Its commands:
``convtwist-zoo leaderboard ...`` and ``convtwist-zoo flow ...``."""
from .probes import (PROBE_LRS, PROBE_PROTOCOL, PROBE_SEED, PROBE_STEP, is_probe, probe_choice, probe_grid,
                     probe_lrs, probe_plan)
from .results import (ResultsFileError, append_row, arm_options, duplicate_of, options_of, protocol_mismatch,
                      protocol_name, read_rows, unique_rows)
from .runner import LEARNING_CURVE_IMAGES, LeaderboardBusyError, check_protocol, run_protocol
from .statistics import difference_cells, holm, mean_std, p_value, reading, welch, why_no_interval
from .tables import CONTROLS, DATASET_CAVEATS, REFERENCES, arms, render_table, same_options_comparisons

__all__ = ["PROBE_LRS", "PROBE_PROTOCOL", "PROBE_SEED", "PROBE_STEP", "is_probe", "probe_choice", "probe_grid",
           "probe_lrs", "probe_plan", "ResultsFileError", "append_row", "arm_options", "duplicate_of", "options_of",
           "protocol_mismatch", "protocol_name", "read_rows", "unique_rows", "LEARNING_CURVE_IMAGES",
           "LeaderboardBusyError", "check_protocol", "run_protocol", "difference_cells", "holm", "mean_std",
           "p_value", "reading", "welch", "why_no_interval", "CONTROLS", "DATASET_CAVEATS", "REFERENCES", "arms",
           "render_table", "same_options_comparisons"]
