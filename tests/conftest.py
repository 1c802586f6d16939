"""GPU tests carry @pytest.mark.gpu and skip, with the reason, where no CUDA device (or no torch) is present."""
import pytest

import attnbench


def _gpu_skip_reason():
    if attnbench.device_count() == 0:
        return "no CUDA device: GPU tests run on a machine with an NVIDIA GPU (see README)"
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed: pip install 'attnbench[torch]'"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _gpu_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
