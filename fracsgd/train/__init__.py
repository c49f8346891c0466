"""Vectorised SGD training that records weight trajectories (theory.md §1).

``run`` trains one network; ``sweep`` trains a grid of seeds × widths × learning rates ×
optimizers × batch sizes in as few compiled programs as possible.
"""

from fracsgd._io import CheckpointError
from fracsgd.train._api import BranchResult, Grid, branch, bucket_widths, plan_sweep, run, sweep
from fracsgd.train._config import OPTIMIZERS, SAMPLINGS, TrainConfig, log_spaced_steps
from fracsgd.train._engine import displacement, estimate_bytes
from fracsgd.train._results import BucketInfo, SweepResult, TrainResult, load_params

__all__ = [
    "OPTIMIZERS",
    "SAMPLINGS",
    "BranchResult",
    "BucketInfo",
    "CheckpointError",
    "Grid",
    "SweepResult",
    "TrainConfig",
    "TrainResult",
    "branch",
    "bucket_widths",
    "displacement",
    "estimate_bytes",
    "load_params",
    "log_spaced_steps",
    "plan_sweep",
    "run",
    "sweep",
]
