"""Does attnbench's C timer agree with triton's do_bench and torch.utils.benchmark?

Regenerates the harness figures in benchmarks/NOTES.md (run on the GPU machine):
    python benchmarks/harness_agreement.py [--out results.json]
1. A kernel of >= 200 us (SDPA flash and cuDNN at 8x16x2048x64 fp16): attnbench
   cold median vs do_bench (median, its own 256 MiB flush) vs torch.utils.benchmark
   (blocked_autorange median).  Agreement within 3% is the bar.
2. A ~10 us SDPA call (1x8x512x64): cold vs hot vs graph medians, and hot with and
   without the blocking kernel (the launch gaps it removes).
3. attnbench.run((4, 8, 512, 64)) end to end: its wall time and table.
"""
import argparse
import json
import time

import numpy as np
import torch
import triton.testing
from torch.utils import benchmark as tbench

import attnbench
from attnbench import sdpa


def inputs(shape, dtype=torch.float16, n=1):
    B, H, S, D = shape
    return [tuple(torch.randn(B, H, S, D, device="cuda", dtype=dtype) for _ in range(3)) for _ in range(n)]


def call_of(backend, q, k, v):
    return sdpa.sdpa_call(backend, q, k, v, False, None)


def c_timer(cands, mode="cold", **kw):
    stream = torch.cuda.current_stream().cuda_stream
    raw = attnbench._core.time(cands, stream, 0, mode, **kw)
    return [float(torch.tensor(t).median()) * 1e6 for t in raw["times"]], raw


def agreement():
    """attnbench cold (with and without the blocking kernel) vs do_bench vs torch.utils.benchmark."""
    rows = []
    (q, k, v), = inputs((8, 16, 2048, 64))
    out = torch.empty_like(q)
    cases = [(b, call_of(b, q, k, v), b) for b in ("flash", "cudnn")]
    cases.append(("attnbench mma", lambda: attnbench.attention(q, k, v, impl="mma", out=out), None))
    for name, fn, backend in cases:
        med, raw = c_timer([(fn, 1)], "cold", max_seconds=2.0)
        med_nb, _ = c_timer([(fn, 1)], "cold", max_seconds=2.0, blocking=False)
        db = triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median") * 1e3
        ctx = sdpa._backend_context(backend) if backend else sdpa._backend_context("default")
        with ctx:
            t = tbench.Timer("fn()", globals=dict(fn=fn))
            tb = t.blocked_autorange(min_run_time=1.0).median * 1e6
        rows.append(dict(case=f"{name} 8x16x2048x64 fp16", attnbench_cold_us=med[0], attnbench_noblock_us=med_nb[0],
                         do_bench_us=db, torch_benchmark_us=tb, vs_do_bench=med[0] / db - 1,
                         noblock_vs_do_bench=med_nb[0] / db - 1, vs_torch_benchmark=med[0] / tb - 1,
                         stop=raw["stop_reason"]))
    return rows


def short_modes():
    """A ~10 us case through attnbench.run in each mode, with and without the blocking kernel."""
    rows = []
    for mode in ("cold", "hot", "graph"):
        for blocking in (True, False):
            r = attnbench.run((1, 8, 512, 64), impl="mma", dtype="fp16", backends=("default", "flash"), mode=mode,
                              blocking=blocking, max_seconds=1.0)
            c, d, f = (r.candidates[n] for n in ("attnbench:mma", "sdpa:default", "sdpa:flash"))
            rows.append(dict(case=f"1x8x512x64 fp16 {mode}{'' if blocking else ' no-blocking'}",
                             mma_us=c.summary["median"], default_us=d.summary["median"], flash_us=f.summary["median"],
                             stop=r.timing["stop_reason"], released_by_timeout=r.timing["released_by_timeout"],
                             sm_mhz=float(np.nanmedian(r.timing["sm_mhz"])) if blocking else float("nan")))
    return rows


def end_to_end():
    t0 = time.perf_counter()
    r = attnbench.run((4, 8, 512, 64))
    wall = time.perf_counter() - t0
    print(r)
    return dict(wall_s=wall, impl=r.impl, passed=r.passed,
                medians_us={k: c.summary["median"] for k, c in r.candidates.items()})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    res = dict(device=attnbench.device_info(), agreement=agreement(), short=short_modes(), run=end_to_end())
    print("\n== timer agreement (>= 200 us kernels)")
    for r in res["agreement"]:
        print(f"{r['case']:<34} attnbench {r['attnbench_cold_us']:8.2f} us (no blocking {r['attnbench_noblock_us']:8.2f})"
              f"  do_bench {r['do_bench_us']:8.2f} ({100 * r['vs_do_bench']:+.2f}%, no blocking "
              f"{100 * r['noblock_vs_do_bench']:+.2f}%)  torch.utils.benchmark {r['torch_benchmark_us']:8.2f} "
              f"({100 * r['vs_torch_benchmark']:+.2f}%)")
    print("== ~10 us case by mode (attnbench.run, mma vs sdpa default)")
    for r in res["short"]:
        print(f"{r['case']:<36} mma {r['mma_us']:7.2f} us  default {r['default_us']:7.2f} us  flash {r['flash_us']:7.2f} us  SM {r['sm_mhz']:.0f} MHz"
              f"  timeouts {r['released_by_timeout']}  [{r['stop'][:34]}]")
    print(f"== run((4, 8, 512, 64)): {res['run']['wall_s']:.2f} s, impl {res['run']['impl']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2, default=str)


if __name__ == "__main__":
    main()
