"""attnbench.run: check a candidate, then time it against the SDPA backends.

The steps, in order:
1. correctness before any timing, on two fresh random input sets (two
   seeds): the candidate first, its output poisoned with NaN before each
   call, its inputs checked unmodified afterwards, a held-stream check that
   it works on the stream it is given; then every SDPA backend; every error
   measured against float64 truth (the C reference, small shapes) or fp32
   truth (the `naive` kernel on fp32 inputs, large shapes);
2. timing of the candidate and the backends, interleaved, by the C timer;
3. statistics, ratio confidence intervals, gates and verdicts, in C.
"""
from __future__ import annotations

import math
import time

import numpy as np

from . import _core, api, sdpa
from .gate import check_close, speedup_gate, verdict
from .reference import reference_attention
from .result import Candidate, Comparison, Result
from .stats import ratio_ci, summarize

# The candidate's error may be at most ERROR_FACTOR times the best SDPA
# backend's error on the same inputs: a correct kernel rounds like the
# libraries do (fp32 accumulation, one rounding of P and of O); a kernel
# with a real bug (a wrong mask, a lost tail, a stale max) is off by far more.
ERROR_FACTOR = 2.0
# ... or within ATOL, the floor for cases where every backend is nearly exact:
# two units in the last place of the output dtype at magnitude 1.
ATOL = {"float16": 2.0 ** -9, "bfloat16": 2.0 ** -6, "float32": 2.0 ** -20}
# Up to this many multiply-adds (B*Hq*Sq*Sk*D) the truth is the float64 C
# reference on the CPU (well under a second); above it, the `naive` GPU
# kernel in fp32 on fp32 copies of the inputs.
CPU_REFERENCE_MAX_MACS = 2 ** 28
# Hot and graph modes rotate over enough input sets to cover twice the L2,
# so no sample finds its inputs still in cache.
L2_COVER = 2.0
MAX_ROTATIONS = 64
MIN_CALLS_PER_SAMPLE = 8
# How long the held-stream check waits for stray work from another stream.
GUARD_MIN_WAIT_S = 0.005
GUARD_MAX_WAIT_S = 0.5
SEED_STRIDE = 1_000_003  # the second correctness seed: far from the first
MAX_SAMPLES = 100_000  # the C timer's cap on samples per candidate (timing.c, MAX_SAMPLES)


def _shape(shape, Sk, Hkv):
    if not isinstance(shape, (tuple, list)) or len(shape) != 4:
        raise ValueError(f"shape must be (B, H, S, D), got {shape!r}")
    for name, x in zip("BHSD", shape):
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise TypeError(f"shape[{name}] must be an int, got {type(x).__name__}")
        if x < 1:
            raise ValueError(f"shape[{name}] must be >= 1, got {x}")
    B, H, S, D = (int(x) for x in shape)
    Sk = S if Sk is None else Sk
    Hkv = H if Hkv is None else Hkv
    for name, x in (("Sk", Sk), ("Hkv", Hkv)):
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(x).__name__}")
        if x < 1:
            raise ValueError(f"{name} must be >= 1, got {x}")
    if H % Hkv:
        raise ValueError(f"H={H} must be a multiple of Hkv={Hkv} (grouped-query attention)")
    return B, H, int(Hkv), S, int(Sk), D


def _dtype(dtype):
    if not isinstance(dtype, str) or dtype not in sdpa.DTYPES:
        raise ValueError(f"dtype must be one of {sorted(sdpa.DTYPES)}, got {dtype!r}")
    name = sdpa.DTYPES[dtype]
    if name == "float32":
        raise ValueError("dtype float32 is for the naive oracle only; run() compares fp16/bf16 kernels")
    return name


def _backends(backends, reference):
    if isinstance(backends, str):
        backends = (backends,)
    backends = tuple(backends)
    for b in backends:
        if b not in sdpa.BACKENDS:
            raise ValueError(f"backends must be drawn from {sdpa.BACKENDS}, got {b!r}")
    if len(set(backends)) != len(backends):
        raise ValueError(f"backends has duplicates: {backends}")
    if reference is not None and reference not in backends:
        raise ValueError(f"reference {reference!r} must be one of backends {backends}")
    return backends


def _real(x):
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _timing_options(max_seconds, min_samples, target_noise, threshold, confidence):
    if not _real(max_seconds) or not max_seconds > 0 or not math.isfinite(max_seconds):
        raise ValueError(f"max_seconds must be a finite number > 0, got {max_seconds!r}")
    if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)) or \
            not 1 <= min_samples <= MAX_SAMPLES:
        raise ValueError(f"min_samples must be an int in [1, {MAX_SAMPLES}], got {min_samples!r}")
    if not _real(target_noise) or not 0 < target_noise < 1:
        raise ValueError(f"target_noise must lie in (0, 1), got {target_noise!r}")
    if not _real(threshold) or not threshold > 0 or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
    if not _real(confidence) or not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _truth(q, k, v, causal, scale):
    """float64 truth on the host: the C reference, or naive in fp32 on the GPU."""
    B, Hq, Sq, D = q.shape
    Sk = k.shape[2]
    if B * Hq * Sq * Sk * D <= CPU_REFERENCE_MAX_MACS:
        return reference_attention(sdpa.to_numpy(q), sdpa.to_numpy(k), sdpa.to_numpy(v), causal=causal,
                                   scale=scale), "float64 C reference"
    q32, k32, v32 = (sdpa.to_float32(x) for x in (q, k, v))
    o32 = api.attention(q32, k32, v32, causal=causal, scale=scale, impl="naive")
    return sdpa.to_numpy(o32), "naive kernel, fp32"


class _Candidate:
    """The thing under test: a registered kernel (launched from C) or a callable."""

    def __init__(self, impl, config, causal, scale):
        self.causal, self.scale, self.config = causal, scale, config
        if callable(impl):
            self.fn, self.impl = impl, getattr(impl, "__name__", "callable")
        else:
            self.fn, self.impl = None, impl

    def resolve(self, q, k, v, out):
        if self.fn is None:
            self.impl = api.resolve_impl(self.impl)
            if self.impl == "auto":
                self.impl = api.pick_impl(q, k, v, out, None, self.causal, self.scale)
            why = _core.supports(self.impl, q, k, v, out, None, self.causal, self.scale)
            if why is not None:
                raise ValueError(why)

    def call(self, q, k, v, out, stream_handle):
        if self.fn is None:
            _core.attention(q, k, v, out, None, self.causal, self.scale, self.impl, self.config, stream_handle)
        else:
            self.fn(q, k, v, out, causal=self.causal, scale=self.scale)

    def timed(self, sets, calls, mode, stream):
        if self.fn is None:
            return _core.Launch(self.impl, sets, self.causal, self.scale, self.config, calls, mode == "graph")
        return _callable_candidate(lambda s: (lambda: self.fn(*s, causal=self.causal, scale=self.scale)),
                                   sets, calls, mode, stream)


def _callable_candidate(bind, sets, calls, mode, stream):
    """(callable, calls_per_sample, calls_per_invocation) for the C timer, rotating over the input sets."""
    fns = [bind(s) for s in sets]
    if mode == "graph":
        state = {"i": 0}

        def one():
            fns[state["i"] % len(fns)]()
            state["i"] += 1
        return (sdpa.capture_graph(one, calls, stream), calls, calls)  # one replay makes every call
    state = {"i": 0}

    def step():
        fns[state["i"]]()
        state["i"] = (state["i"] + 1) % len(fns)
    return (step, calls, 1)


def _error(out_host, truth):
    r = check_close(out_host, truth, atol=0.0, rtol=0.0)
    diff = out_host.astype(np.float64) - truth
    rel_l2 = float(np.linalg.norm(np.nan_to_num(diff, nan=np.inf)) / max(np.linalg.norm(truth), 1e-300))
    return {"max_abs": r["max_abs"], "rel_l2": rel_l2, "nan": r["nan_count"], "inf": r["inf_count"]}


def _held_stream_check(cand, q, k, v, out, stream, handle, device, wait_s):
    """Catch work done on a stream other than the one the candidate was given.

    The candidate is called while `stream` is held by a spin kernel, and a NaN
    scan of its output is queued right behind it on the same stream.  Work on
    another stream shows in one of two ways: output that appears while the
    stream is still held (a side stream that does not wait), or output still
    missing when the scan runs, right after everything the candidate put on
    the stream (a side stream that waits for the held stream, then races it).
    Returns (wrote_early, missing_at_scan, held_timed_out).
    """
    # Everything that could wait on the device (allocations, the first launch of
    # the scan kernel) happens before the hold; a wait inside it would stall
    # until the spin kernel's timeout.
    side = sdpa.new_stream(q.device)
    at_end, early_scan = _core.nan_counter(device), _core.nan_counter(device)
    for counter in (at_end, early_scan):
        _core.nan_scan(counter, out, handle)
        _core.nan_scan_result(counter)
    sdpa.fill_nan(out)
    sdpa.synchronize()
    block = _core.block_stream(handle, device, timeout_ms=1000.0 * (wait_s + 2.0))
    try:
        cand.call(q, k, v, out, handle)
        _core.nan_scan(at_end, out, handle)  # queued on `stream`, right behind the candidate's work
        time.sleep(wait_s)
        _core.nan_scan(early_scan, out, side.cuda_stream)
        early = _core.nan_scan_result(early_scan)
    finally:
        timed_out = _core.release_block(block)
    missing = _core.nan_scan_result(at_end)
    sdpa.synchronize()
    return early < out.numel(), missing > 0, timed_out


def run(shape, impl="auto", dtype="bf16", causal=False, backends=("default", "flash", "efficient", "cudnn"),
        mode="cold", seed=0, *, Sk=None, Hkv=None, scale=None, config=None, reference=None, device=0,
        max_seconds=2.0, min_samples=20, target_noise=0.005, blocking=True, threshold=0.95, confidence=0.95):
    """Check a kernel against fp64/fp32 truth, then time it against PyTorch SDPA.

    Parameters
    ----------
    shape : (B, H, S, D)
        Query batch, heads, sequence length and head dim.
    impl : str or callable
        A registered kernel ('auto', 'naive', 'mma', ...; $ATTNBENCH_IMPL
        overrides 'auto'), or a callable ``fn(q, k, v, out, causal=, scale=)``
        that writes ``out`` (torch tensors) on torch's current stream.
    dtype : {'bf16', 'fp16'}
    causal : bool
        SDPA's top-left aligned ``is_causal``.
    backends : sequence of {'default', 'flash', 'efficient', 'cudnn', 'math'}
        SDPA backends to compare with; one that cannot run the case is
        reported unsupported with torch's reason.
    mode : {'cold', 'hot', 'graph'}
        cold: L2 flushed before each call; hot: back-to-back calls over
        rotating inputs; graph: those calls replayed from a CUDA graph.
    seed : int
        Seed of the random inputs (the correctness check also uses a second seed).
    Sk, Hkv : int, optional
        Key/value length and heads (default S and H; H % Hkv == 0).
    scale : float, optional
        Softmax scale, default 1/sqrt(D).
    config : str, optional
        The kernel's tunable config.
    reference : str, optional
        The backend the speedup gate compares with: by default 'default' when
        it is among `backends`, else the first of them.
    max_seconds, min_samples, target_noise, blocking
        The C timer's stopping rule: stop when every candidate's relative noise
        of the median is below target_noise (after min_samples), or after
        max_seconds of sampling; blocking queues each round behind a spin kernel.
    threshold, confidence
        The speedup gate: candidate median below threshold x reference's, with
        the ratio's upper confidence bound below 1.

    Returns
    -------
    Result

    Examples
    --------
    >>> import attnbench
    >>> r = attnbench.run((4, 8, 512, 64), impl="naive", backends=("flash",))  # doctest: +SKIP
    >>> print(r)                                                                # doctest: +SKIP
    """
    B, Hq, Hkv, Sq, Sk, D = _shape(shape, Sk, Hkv)
    dtype = _dtype(dtype)
    causal = api._check_flag(causal, "causal")
    scale = api._check_scale(scale)
    backends = _backends(backends, reference)
    if reference is None and backends:
        reference = "default" if "default" in backends else backends[0]
    if mode not in ("cold", "hot", "graph"):
        raise ValueError(f"mode must be 'cold', 'hot' or 'graph', got {mode!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not callable(impl) and not isinstance(impl, str):
        raise TypeError(f"impl must be a kernel name or a callable, got {type(impl).__name__}")
    _timing_options(max_seconds, min_samples, target_noise, threshold, confidence)
    api.require_gpu(device)
    torch = sdpa.torch()
    dev = torch.device("cuda", device)
    cand = _Candidate(impl, config, causal, scale)
    eff_scale = scale if scale is not None else 1.0 / math.sqrt(D)
    t_start = time.perf_counter()
    with torch.cuda.device(dev):
        stream = sdpa.new_stream(dev)
        handle = stream.cuda_stream
        with sdpa.on_stream(stream):
            checks = _check(cand, (B, Hq, Hkv, Sq, Sk, D), dtype, causal, eff_scale, backends, seed, dev,
                            stream, handle, device)
            timing = None
            if checks["passed"]:
                timing = _time(cand, checks, (B, Hq, Hkv, Sq, Sk, D), dtype, causal, eff_scale, backends, mode,
                               seed, dev, stream, handle, device,
                               dict(max_seconds=max_seconds, min_samples=min_samples, target_noise=target_noise,
                                    blocking=blocking))
    return _result(cand, checks, timing, (B, Hq, Hkv, Sq, Sk, D), dtype, causal, eff_scale, backends, reference,
                   mode, seed, device, threshold, confidence, time.perf_counter() - t_start)


def _check(cand, dims, dtype, causal, scale, backends, seed, dev, stream, handle, device):
    B, Hq, Hkv, Sq, Sk, D = dims
    notes, cand_errors, backend_errors, unsupported = [], [], {}, {}
    inputs_ok, stream_ok, truth_kind = True, True, None
    for i, s in enumerate((seed, seed + SEED_STRIDE)):
        q, k, v = sdpa.random_inputs(B, Hq, Hkv, Sq, Sk, D, dtype, s, dev)
        originals = [sdpa.clone(x) for x in (q, k, v)]
        out = sdpa.empty_out(q, (B, Hq, Sq, D))
        if i == 0:
            cand.resolve(q, k, v, out)
        # The candidate runs first, into a poisoned output.
        sdpa.fill_nan(out)
        t0 = time.perf_counter()
        cand.call(q, k, v, out, handle)
        stream.synchronize()
        call_s = time.perf_counter() - t0
        if not all(sdpa.same(a, b) for a, b in zip((q, k, v), originals)):
            inputs_ok = False
            notes.append(f"seed {s}: the candidate modified its inputs")
        out_host = sdpa.to_numpy(out)
        truth, truth_kind = _truth(*originals, causal, scale)
        cand_errors.append(_error(out_host, truth))
        if i == 0:
            wait = min(max(GUARD_MIN_WAIT_S, 5 * call_s), GUARD_MAX_WAIT_S)
            early, missing, timed_out = _held_stream_check(cand, originals[0], originals[1], originals[2], out,
                                                           stream, handle, device, wait)
            if timed_out:
                notes.append("held-stream check inconclusive: the candidate waited for its held stream "
                             "(it synchronizes inside the call)")
            elif early:
                stream_ok = False
                notes.append("the candidate wrote its output while its stream was held: it works on another stream")
            elif missing:
                stream_ok = False
                notes.append("the candidate's output was incomplete when the work it queued on its stream ended: "
                             "it works on another stream")
        for b in backends:
            if b in unsupported:
                continue
            o, why = sdpa.probe(sdpa.sdpa_call(b, *originals, causal, scale))
            if why is not None:
                unsupported[b] = why
                continue
            backend_errors.setdefault(b, []).append(_error(sdpa.to_numpy(o), truth))
        stream.synchronize()
    best = min((max(e["max_abs"] for e in errs) for errs in backend_errors.values()), default=None)
    tol = max(ATOL[dtype], ERROR_FACTOR * best) if best is not None else ATOL[dtype]
    worst = max(e["max_abs"] for e in cand_errors)
    finite = all(e["nan"] == 0 and e["inf"] == 0 for e in cand_errors)
    accurate = finite and worst <= tol
    if not finite:
        notes.append("the candidate's output holds NaN or Inf (unwritten or broken)")
    elif not accurate:
        notes.append(f"the candidate's max error {worst:.3g} exceeds the tolerance {tol:.3g}")
    return {
        "passed": accurate and inputs_ok and stream_ok,
        "accurate": accurate, "inputs_unmodified": inputs_ok, "same_stream": stream_ok,
        "max_abs_error": worst, "tolerance": tol, "error_factor": ERROR_FACTOR, "atol": ATOL[dtype],
        "truth": truth_kind, "candidate_errors": cand_errors, "backend_errors": backend_errors,
        "unsupported": unsupported, "notes": notes,
    }


def _rotation(dims, dtype, mode, dev):
    B, Hq, Hkv, Sq, Sk, D = dims
    if mode == "cold":
        return 1, 1
    set_bytes = 2 * (2 * B * Hq * Sq * D + 2 * B * Hkv * Sk * D)
    l2 = _core.device_info(dev.index)["l2_bytes"]
    n = int(min(MAX_ROTATIONS, max(1, math.ceil(L2_COVER * l2 / set_bytes))))
    return n, max(n, MIN_CALLS_PER_SAMPLE)


def _time(cand, checks, dims, dtype, causal, scale, backends, mode, seed, dev, stream, handle, device, opts):
    B, Hq, Hkv, Sq, Sk, D = dims
    n_sets, calls = _rotation(dims, dtype, mode, dev)
    sets = []
    for j in range(n_sets):
        q, k, v = sdpa.random_inputs(B, Hq, Hkv, Sq, Sk, D, dtype, seed + 7 * (j + 1), dev)
        sets.append((q, k, v, sdpa.empty_out(q, (B, Hq, Sq, D))))
    supported = [b for b in backends if b not in checks["unsupported"]]
    timed = [cand.timed(sets, calls, mode, stream)]
    for b in supported:
        timed.append(_callable_candidate(lambda s, b=b: sdpa.sdpa_call(b, s[0], s[1], s[2], causal, cand.scale),
                                         sets, calls, mode, stream))
    raw = _core.time(timed, handle, device, mode, **opts)
    # Post-timing check (cold mode: every timed call wrote sets[0]'s output).
    post = None
    if mode == "cold":
        q, k, v, out = sets[0]
        truth, _ = _truth(q, k, v, causal, scale)
        post = _error(sdpa.to_numpy(out), truth)
    return {"raw": raw, "names": ["candidate"] + supported, "n_sets": n_sets, "calls": calls, "post": post}


def _result(cand, checks, timing, dims, dtype, causal, scale, backends, reference, mode, seed, device, threshold,
            confidence, wall):
    B, Hq, Hkv, Sq, Sk, D = dims
    flops = 4.0 * B * Hq * Sq * Sk * D * (0.5 if causal else 1.0)
    nbytes = 2 * (2 * B * Hq * Sq * D + 2 * B * Hkv * Sk * D)
    info = _core.device_info(device)
    env = {"gpu": info, **sdpa.versions(), "attnbench": __import__("attnbench").__version__}
    cands, comps = {}, {}
    cname = f"attnbench:{cand.impl}"
    if timing is not None:
        raw = timing["raw"]
        clock_floor = 0.75 * info["clock_khz"] / 1000.0
        mhz = raw["sm_mhz"]
        measured = mhz[np.isfinite(mhz)]
        throttled = bool(measured.size and np.any(measured < clock_floor))
        for idx, name in enumerate(timing["names"]):
            t = raw["times"][idx]
            key = cname if name == "candidate" else f"sdpa:{name}"
            med = float(np.median(t))
            cands[key] = Candidate(
                name=key, kind="kernel" if name == "candidate" else "backend", samples=t,
                summary=summarize(t * 1e6), tflops=flops / med / 1e12, bandwidth_gbs=nbytes / med / 1e9,
                noise=raw["noise"][idx])
        ct = raw["times"][0]
        for idx, name in enumerate(timing["names"][1:], start=1):
            bt = raw["times"][idx]
            ratio, lo, hi = ratio_ci(ct, bt, confidence=confidence, seed=seed)
            g = speedup_gate(ct, bt, threshold=threshold, confidence=confidence, seed=seed)
            comps[name] = Comparison(baseline=f"sdpa:{name}", ratio=ratio, ratio_low=lo, ratio_high=hi,
                                     speedup=1.0 / ratio, speedup_low=1.0 / hi, speedup_high=1.0 / lo,
                                     gate=g, verdict=verdict(1.0 / ratio))
        timing_info = {"mode": mode, "stop_reason": raw["stop_reason"], "samples": raw["samples"],
                       "wall_seconds": raw["wall_seconds"], "sm_mhz": mhz, "throttled": throttled,
                       "clock_floor_mhz": clock_floor, "released_by_timeout": int(raw["released_by_timeout"].sum()),
                       "input_sets": timing["n_sets"], "calls_per_sample": timing["calls"]}
        if timing["post"] is not None:
            post_ok = timing["post"]["nan"] == 0 and timing["post"]["max_abs"] <= checks["tolerance"]
            checks["post_timing"] = {**timing["post"], "passed": post_ok}
            if not post_ok:
                checks["passed"] = False
                checks["notes"].append("the output of the timed calls does not match the truth")
    else:
        timing_info = {"mode": mode, "stop_reason": "not timed: the candidate failed its correctness check"}
    gate = comps[reference].gate if reference in comps else None
    speedup = bool(gate["passed"]) if gate else None
    if timing is not None and reference is not None and gate is None:
        # the reference backend could not run the case: there is nothing the kernel beat
        speedup = False
        checks["notes"].append(f"no speedup gate: the reference backend sdpa:{reference} cannot run this case")
    gates = {"correctness": checks["passed"], "speedup": speedup, "reference": reference,
             "threshold": threshold, "confidence": confidence}
    gates["passed"] = bool(checks["passed"] and speedup is not False)
    return Result(shape={"B": B, "Hq": Hq, "Hkv": Hkv, "Sq": Sq, "Sk": Sk, "D": D}, dtype=dtype, causal=causal,
                  scale=scale, impl=cand.impl, config=cand.config, seed=seed, flops=flops, bytes=nbytes,
                  candidates=cands, comparisons=comps, correctness=checks, gates=gates, timing=timing_info,
                  environment=env, backends=list(backends), wall_seconds=wall)
