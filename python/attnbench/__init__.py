"""attnbench: is your attention kernel faster than PyTorch's SDPA, and by how much, for sure?

The statistics, gates, float64 reference, kernel registry and timing loop are
C and CUDA (attnbench._core); this package is the thin layer over them.
Importing it makes no CUDA call, so it works on machines without a GPU.
"""
from ._load import load_core as _load_core

_core = _load_core()

from .stats import bootstrap_ci, ratio_ci, summarize  # noqa: E402
from .gate import check_close, regression_gate, speedup_gate, verdict  # noqa: E402
from .reference import reference_attention  # noqa: E402
from .api import attention, device_count, device_info, kernels  # noqa: E402
from .harness import run  # noqa: E402
from .result import Result  # noqa: E402
from .grid import Grid, load_grid  # noqa: E402
from .report import Report  # noqa: E402
from .multi import sweep  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "summarize", "bootstrap_ci", "ratio_ci",
    "check_close", "speedup_gate", "regression_gate", "verdict",
    "reference_attention",
    "attention", "kernels", "device_count", "device_info",
    "run", "Result",
    "load_grid", "Grid", "sweep", "Report",
]
