"""attnbench.run on the GPU: the Result, the timer, and the exploit guards."""
import json
import time

import numpy as np
import pytest

import attnbench

pytestmark = pytest.mark.gpu

SHAPE = (2, 4, 256, 64)
FAST = dict(max_seconds=0.3, min_samples=10)


def _sdpa(q, k, v, causal, scale):
    import torch
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale,
                                                            enable_gqa=q.shape[1] != k.shape[1])


def good(q, k, v, out, causal, scale):
    out.copy_(_sdpa(q, k, v, causal, scale))


def writes_nothing(q, k, v, out, causal, scale):
    pass


def writes_half_the_rows(q, k, v, out, causal, scale):
    S = q.shape[2]
    out[:, :, : S // 2].copy_(_sdpa(q, k, v, causal, scale)[:, :, : S // 2])


def modifies_inputs(q, k, v, out, causal, scale):
    out.copy_(_sdpa(q, k, v, causal, scale))
    k.mul_(1.5)


def make_replayer():
    saved = {}

    def returns_previous_output(q, k, v, out, causal, scale):
        if "o" not in saved:
            saved["o"] = _sdpa(q, k, v, causal, scale).clone()
        out.copy_(saved["o"])
    return returns_previous_output


def other_stream(q, k, v, out, causal, scale):
    import torch
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out.copy_(_sdpa(q, k, v, causal, scale))


def other_stream_no_wait(q, k, v, out, causal, scale):
    import torch
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        out.copy_(_sdpa(q, k, v, causal, scale))


def test_run_returns_a_full_result():
    t0 = time.perf_counter()
    r = attnbench.run((4, 8, 512, 64))
    wall = time.perf_counter() - t0
    assert r.correctness["passed"], r.correctness
    assert "attnbench:" + r.impl in r.candidates
    for b in ("default", "flash", "efficient", "cudnn"):
        assert b in r.comparisons or b in r.correctness["unsupported"]
    for c in r.candidates.values():
        assert c.samples.size >= 20 and np.all(c.samples > 0)
        assert c.summary["median"] > 0 and c.tflops > 0
    comp = next(iter(r.comparisons.values()))
    assert comp.speedup_low <= comp.speedup <= comp.speedup_high
    assert r.timing["stop_reason"].split(":")[0] in ("converged", "max_time", "max_samples")
    assert r.environment["gpu"]["sm_count"] > 0 and r.environment["torch"]
    text = str(r)
    assert "correctness: PASS" in text and "sdpa:default" in text
    d = json.loads(r.to_json())
    assert d["schema"] == 1 and d["shape"]["S" + "q"] == 512
    assert "<table>" in r._repr_html_()
    assert wall < 15, wall


def test_good_callable_passes_and_is_timed():
    r = attnbench.run(SHAPE, impl=good, backends=("flash",), **FAST)
    assert r.correctness["passed"], r.correctness["notes"]
    assert r.comparisons["flash"].ratio > 0


@pytest.mark.parametrize("broken,why", [
    (writes_nothing, "NaN"),
    (writes_half_the_rows, "NaN"),
    (modifies_inputs, "modified its inputs"),
    (make_replayer(), "exceeds the tolerance"),
    (other_stream, "another stream"),
    (other_stream_no_wait, "another stream"),
])
def test_exploit_guards_catch_broken_candidates(broken, why):
    r = attnbench.run(SHAPE, impl=broken, backends=("flash",), **FAST)
    assert not r.correctness["passed"]
    assert not r.passed
    assert any(why in n for n in r.correctness["notes"]), r.correctness["notes"]
    assert not r.candidates  # nothing is timed after a failed check


@pytest.mark.parametrize("mode", ["hot", "graph"])
def test_hot_and_graph_modes(mode):
    r = attnbench.run(SHAPE, impl="naive", backends=("flash",), mode=mode, **FAST)
    assert r.correctness["passed"]
    assert r.timing["calls_per_sample"] >= 8 and r.timing["input_sets"] >= 1
    assert all(c.summary["median"] > 0 for c in r.candidates.values())


def test_unsupported_backend_is_reported_not_raised():
    # fp16 with D=256 and S=1 still runs in math; flash may or may not: either way no crash
    r = attnbench.run((1, 2, 64, 64), impl="naive", backends=("math", "flash", "cudnn"), Sk=96, causal=True, **FAST)
    assert r.correctness["passed"]
    for b in ("math", "flash", "cudnn"):
        assert (b in r.comparisons) != (b in r.correctness["unsupported"])


def test_timer_measures_sm_clock_and_interleaves():
    import torch
    q = torch.randn(4, 8, 1024, 64, device="cuda", dtype=torch.float16)
    out = torch.empty_like(q)
    launch = attnbench._core.Launch("naive", [(q, q, q, out)])
    calls = []
    fn = (lambda: calls.append(1) or torch.nn.functional.scaled_dot_product_attention(q, q, q), 1)
    raw = attnbench._core.time([launch, fn], torch.cuda.current_stream().cuda_stream, 0, "cold",
                               max_seconds=0.3, min_samples=10)
    n = raw["samples"]
    assert n >= 10 and len(raw["times"]) == 2 and raw["times"][0].size == n
    mhz = raw["sm_mhz"]
    assert np.isfinite(mhz).all() and (mhz > 100).all() and (mhz < 5000).all()
    assert len(calls) >= n  # warm-up calls and one per round


def test_graph_replay_counts_as_many_calls():
    import torch
    s = torch.cuda.Stream()
    q = torch.randn(1, 8, 512, 64, device="cuda", dtype=torch.float16)
    call = lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)  # noqa: E731
    replay = attnbench.sdpa.capture_graph(call, 20, s)
    with torch.cuda.stream(s):
        hot = attnbench._core.time([(call, 20)], s.cuda_stream, 0, "hot", max_seconds=0.2)
        graph = attnbench._core.time([(replay, 20, 20)], s.cuda_stream, 0, "graph", max_seconds=0.2)
    h, g = np.median(hot["times"][0]), np.median(graph["times"][0])
    assert 0.3 * h < g < 1.5 * h, (h, g)  # one replay is 20 calls, not one


def test_python_exception_in_candidate_propagates():
    import torch

    def boom():
        raise KeyError("boom")
    with pytest.raises(KeyError, match="boom"):
        attnbench._core.time([(boom, 1)], torch.cuda.current_stream().cuda_stream, 0, "cold", max_seconds=0.1)


def test_run_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        attnbench.run(SHAPE, mode="warm")
    with pytest.raises(ValueError, match="backends"):
        attnbench.run(SHAPE, backends=("fast",))
    with pytest.raises(ValueError, match="head dim|D="):
        attnbench.run((1, 1, 16, 300), impl="mma" if "mma" in [k["name"] for k in attnbench.kernels()] else "naive")
