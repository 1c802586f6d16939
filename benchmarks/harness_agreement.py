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

import torch
import torch.nn.functional as F
import triton.testing
from torch.nn.attention import SDPBackend, sdpa_kernel
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
    rows = []
    (q, k, v), = inputs((8, 16, 2048, 64))
    for backend in ("flash", "cudnn"):
        fn = call_of(backend, q, k, v)
        med, raw = c_timer([(fn, 1)], "cold", max_seconds=2.0)
        db = triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median") * 1e3
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION if backend == "flash" else SDPBackend.CUDNN_ATTENTION]):
            t = tbench.Timer("F.scaled_dot_product_attention(q, k, v)", globals=dict(F=F, q=q, k=k, v=v))
            tb = t.blocked_autorange(min_run_time=1.0).median * 1e6
        rows.append(dict(case=f"{backend} 8x16x2048x64 fp16", attnbench_cold_us=med[0], do_bench_us=db,
                         torch_benchmark_us=tb, vs_do_bench=med[0] / db - 1, vs_torch_benchmark=med[0] / tb - 1,
                         stop=raw["stop_reason"]))
    return rows


def short_modes():
    rows = []
    shape = (1, 8, 512, 64)
    sets = inputs(shape, n=32)
    fns = [call_of("default", *s) for s in sets]
    state = {"i": 0}

    def rot():
        fns[state["i"] % len(fns)]()
        state["i"] += 1
    for mode, blocking in (("cold", True), ("cold", False), ("hot", True), ("hot", False), ("graph", True)):
        if mode == "graph":
            s = torch.cuda.Stream()
            cand = (sdpa.capture_graph(rot, 32, s), 32)
        else:
            cand = (rot, 32 if mode == "hot" else 1)
        med, raw = c_timer([cand], mode, blocking=blocking, max_seconds=1.0)
        rows.append(dict(case=f"default 1x8x512x64 fp16 {mode}{'' if blocking else ' no-blocking'}",
                         median_us=med[0], stop=raw["stop_reason"],
                         sm_mhz=float(torch.tensor(raw["sm_mhz"]).nanmedian())))
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
        print(f"{r['case']:<28} attnbench {r['attnbench_cold_us']:9.2f} us  do_bench {r['do_bench_us']:9.2f} "
              f"({100 * r['vs_do_bench']:+.2f}%)  torch.utils.benchmark {r['torch_benchmark_us']:9.2f} "
              f"({100 * r['vs_torch_benchmark']:+.2f}%)")
    print("== ~10 us SDPA call by mode")
    for r in res["short"]:
        print(f"{r['case']:<44} {r['median_us']:8.2f} us  SM {r['sm_mhz']:.0f} MHz  [{r['stop'][:40]}]")
    print(f"== run((4, 8, 512, 64)): {res['run']['wall_s']:.2f} s, impl {res['run']['impl']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2, default=str)


if __name__ == "__main__":
    main()
