"""attnbench's kernels and the SDPA backends side by side on the H200 grid of shared/ANCHORS.md.

    python benchmarks/kernels_grid.py [--part long|short|all] [--dtypes fp16,bf16] [--causal both|yes|no]
                                      [--out grid.json]

For each case every kernel that supports it and every backend are timed in ONE call of the C timer
(cold: L2 flushed before each call; samples taken round-robin), so ratios are side by side.
Correctness is the parity suite's job (tests/test_gpu_parity.py); this script only times.
Prints TFLOP/s per candidate and, per kernel, the geometric-mean speed relative to `flash` and
`default` over the cases of the chosen part.
"""
import argparse
import json
import math

import numpy as np
import torch

import attnbench
from attnbench import _core, sdpa

SHAPES = [(1, 8, 512, 64), (4, 8, 512, 64), (1, 8, 512, 128), (16, 16, 1024, 64), (8, 16, 2048, 64),
          (8, 16, 2048, 128), (2, 16, 8192, 64), (2, 16, 8192, 128), (1, 16, 16384, 128)]
BACKENDS = ("flash", "cudnn", "default")


def floor_calls(q):
    """Two do-nothing-useful candidates that bound what any kernel can reach in this timer: `floor:launch`
    is one tiny kernel (the launch and event floor of a cold sample), `floor:copy_o` copies an output-sized
    tensor (reads and writes what an attention kernel writes, through a flushed L2)."""
    one = torch.zeros(1, device=q.device, dtype=q.dtype)
    dst = torch.empty_like(q)
    return [("floor:launch", lambda: one.add_(1)), ("floor:copy_o", lambda: dst.copy_(q))]


def time_side_by_side(q, k, v, causal, kernels, backends, stream, max_seconds, floor=False):
    """(names, raw) of ONE cold C-timer call over the kernels ("impl" or "impl@config") that support the case,
    the SDPA backends that run it, and with `floor` the two floor_calls."""
    names, cands = [], []
    for name in kernels:
        impl, _, config = name.partition("@")
        out = torch.empty_like(q)
        if _core.supports(impl, q, k, v, out, None, causal, None) is None:
            names.append(name)
            cands.append(_core.Launch(impl, [(q, k, v, out)], causal, None, config or None))
    for b in backends:
        call = sdpa.sdpa_call(b, q, k, v, causal, None)
        if sdpa.probe(call)[1] is None:
            names.append("sdpa:" + b)
            cands.append((call, 1))
    if floor:
        for n, call in floor_calls(q):
            names.append(n)
            cands.append((call, 1))
    return names, _core.time(cands, stream.cuda_stream, 0, "cold", max_seconds=max_seconds, min_samples=10)


def one_case(shape, dtype, causal, kernels, stream, max_seconds, floor=False):
    B, H, S, D = shape
    q, k, v = sdpa.random_inputs(B, H, H, S, S, D, dtype, 0, "cuda")
    names, raw = time_side_by_side(q, k, v, causal, kernels, BACKENDS, stream, max_seconds, floor)
    flops = 4.0 * B * H * S * S * D * (0.5 if causal else 1.0)
    med = {n: float(np.median(t)) for n, t in zip(names, raw["times"])}
    return dict(shape=shape, dtype=dtype, causal=causal, median_us={n: 1e6 * m for n, m in med.items()},
                tflops={n: flops / m / 1e12 for n, m in med.items()}, stop=raw["stop_reason"],
                samples=raw["samples"], sm_mhz=float(np.nanmedian(raw["sm_mhz"])))


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="long", choices=("long", "short", "all"))
    ap.add_argument("--dtypes", default="fp16,bf16")
    ap.add_argument("--kernels", default=",".join(k["name"] for k in attnbench.kernels() if k["name"] != "naive"),
                    help="comma-separated impl or impl@config names")
    ap.add_argument("--causal", default="both", choices=("both", "yes", "no"), help="which masks to time")
    ap.add_argument("--max-seconds", type=float, default=0.8)
    ap.add_argument("--floor", action="store_true", help="also time floor:launch and floor:copy_o (floor_calls)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    shapes = [s for s in SHAPES if a.part == "all" or (s[2] >= 1024) == (a.part == "long")]
    kernels = a.kernels.split(",")
    stream = torch.cuda.Stream()
    rows = []
    with torch.cuda.stream(stream):
        for dt in a.dtypes.split(","):
            for shape in shapes:
                for causal in {"both": (False, True), "yes": (True,), "no": (False,)}[a.causal]:
                    r = one_case(shape, sdpa.DTYPES[dt], causal, kernels, stream, a.max_seconds, a.floor)
                    rows.append(r)
                    tf = r["tflops"]
                    print(f"{dt} {'x'.join(map(str, shape)):<14} {'causal' if causal else '      '} " +
                          "  ".join(f"{n.replace('sdpa:', '')} {tf[n]:6.1f}" for n in tf), flush=True)
    print(f"\n== geometric-mean speed vs flash / default over the {a.part} part ({len(rows)} cases)")
    for kern in kernels:
        vs = {b: [r["median_us"]["sdpa:" + b] / r["median_us"][kern] for r in rows
                  if kern in r["median_us"] and "sdpa:" + b in r["median_us"]] for b in ("flash", "default")}
        lo = min(vs["default"]) if vs["default"] else float("nan")
        print(f"{kern:<10} vs flash {geomean(vs['flash']):.3f} (n={len(vs['flash'])})   vs default "
              f"{geomean(vs['default']):.3f} (worst {lo:.3f})")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(dict(device=attnbench.device_info(), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
