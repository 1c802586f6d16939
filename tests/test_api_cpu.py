"""The Python layer's argument checks and the Result's formats, without a GPU."""
import json

import numpy as np
import pytest

import attnbench
from attnbench.result import Candidate, Comparison, Result


def test_import_makes_no_cuda_call_and_lists_kernels():
    names = [k["name"] for k in attnbench.kernels()]
    assert "naive" in names
    naive = attnbench.kernels()[names.index("naive")]
    assert naive["max_head_dim"] == 256 and "float32" in naive["dtypes"]


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(shape=(1, 2, 3)), ValueError, "shape must be"),
    (dict(shape=(1, 2, 0, 64)), ValueError, r"shape\[S\]"),
    (dict(shape=(1, 2.0, 8, 64)), TypeError, r"shape\[H\]"),
    (dict(shape=(1, 4, 8, 64), Hkv=3), ValueError, "multiple of Hkv"),
    (dict(shape=(1, 4, 8, 64), dtype="int8"), ValueError, "dtype"),
    (dict(shape=(1, 4, 8, 64), dtype="fp32"), ValueError, "naive oracle only"),
    (dict(shape=(1, 4, 8, 64), causal="yes"), TypeError, "causal"),
    (dict(shape=(1, 4, 8, 64), scale=float("nan")), ValueError, "scale"),
    (dict(shape=(1, 4, 8, 64), backends=("flash", "flash")), ValueError, "duplicates"),
    (dict(shape=(1, 4, 8, 64), mode="lukewarm"), ValueError, "mode"),
    (dict(shape=(1, 4, 8, 64), backends=("flash",), reference="cudnn"), ValueError, "reference"),
    (dict(shape=(1, 4, 8, 64), seed=-1), ValueError, "seed"),
    (dict(shape=(1, 4, 8, 64), impl=3), TypeError, "impl"),
])
def test_run_checks_arguments_before_touching_the_gpu(kwargs, exc, match):
    shape = kwargs.pop("shape")
    with pytest.raises(exc, match=match):
        attnbench.run(shape, **kwargs)


def test_gpu_entry_points_say_no_device(monkeypatch):
    if attnbench.device_count() > 0:
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        attnbench.run((1, 2, 8, 64))
    with pytest.raises(RuntimeError, match="no CUDA device"):
        attnbench.device_info()
    with pytest.raises(RuntimeError, match="no CUDA device"):
        attnbench._core.synchronize()


def test_impl_from_environment(monkeypatch):
    monkeypatch.setenv("ATTNBENCH_IMPL", "naive")
    assert attnbench.api.resolve_impl("auto") == "naive"
    monkeypatch.setenv("ATTNBENCH_IMPL", "bogus")
    with pytest.raises(ValueError, match="not a registered kernel"):
        attnbench.api.resolve_impl(None)


def _fake_result():
    rng = np.random.default_rng(1)
    cand = rng.normal(10e-6, 0.1e-6, 200)
    base = rng.normal(12e-6, 0.1e-6, 200)
    cands = {
        "attnbench:naive": Candidate("attnbench:naive", "kernel", cand, attnbench.summarize(cand * 1e6), 1.0, 2.0, 0.001),
        "sdpa:flash": Candidate("sdpa:flash", "backend", base, attnbench.summarize(base * 1e6), 0.8, 1.6, 0.001),
    }
    ratio, lo, hi = attnbench.ratio_ci(cand, base)
    g = attnbench.speedup_gate(cand, base)
    comps = {"flash": Comparison("sdpa:flash", ratio, lo, hi, 1 / ratio, 1 / hi, 1 / lo, g, attnbench.verdict(1 / ratio))}
    return Result(shape={"B": 1, "Hq": 8, "Hkv": 8, "Sq": 512, "Sk": 512, "D": 64}, dtype="bfloat16", causal=False,
                  scale=0.125, impl="naive", config=None, seed=0, flops=1e9, bytes=1e6, candidates=cands,
                  comparisons=comps, correctness={"passed": True, "max_abs_error": 1e-3, "tolerance": 2e-3,
                                                  "notes": [], "unsupported": {"cudnn": "no"}},
                  gates={"passed": True, "speedup": True, "correctness": True, "reference": "flash"},
                  timing={"mode": "cold", "stop_reason": "converged: test", "sm_mhz": np.array([1980.0])},
                  environment={"gpu": {"name": "Fake", "sm_count": 1}, "torch": "x"}, backends=["flash", "cudnn"])


def test_result_formats():
    r = _fake_result()
    text = str(r)
    assert "sdpa:flash" in text and "correctness: PASS" in text and "Good" in text
    d = json.loads(r.to_json())
    assert d["comparisons"]["flash"]["verdict"] == "Good"
    assert len(d["candidates"]["sdpa:flash"]["samples_s"]) == 200
    assert "samples_s" not in json.loads(r.to_json(samples=False))["candidates"]["sdpa:flash"]
    assert "<table>" in r._repr_html_() and r.passed


@pytest.mark.parametrize("kwargs,match", [
    (dict(max_seconds=0), "max_seconds"),
    (dict(min_samples=0), "min_samples"),
    (dict(min_samples=10**6), "min_samples"),
    (dict(target_noise=0), "target_noise"),
    (dict(threshold=float("inf")), "threshold"),
    (dict(confidence=1.0), "confidence"),
])
def test_run_checks_timing_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        attnbench.run((1, 4, 8, 64), **kwargs)
