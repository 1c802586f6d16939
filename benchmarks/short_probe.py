"""Where the time of a launch goes: fixed cost against cost per key block, from Sk sweeps.

    python benchmarks/short_probe.py --preset short|tile [--kernels wgmma@m64_ov,...] [--out probe.json]

Each row is timed in ONE call of the C timer (cold, round-robin) with cuDNN and the two floors of
kernels_grid.py beside the kernels (floor:launch, one tiny kernel; floor:copy_o, a copy the size of the
output).  Sweeping Sk at a fixed Sq keeps the tiles (CTAs) fixed and changes only the key loop's length,
so time against Sk is a line: its slope is the cost of a key block on the critical path and its intercept
the fixed cost (launch, first loads, epilogue; for a persistent kernel, per tile times tiles per SM).
  short: B=4, H=8, D=64, Sq=512 (the latency-bound H200 case), Sk = 128..512, and Sq = 128, 256 at Sk=512
  tile:  16x16x1024x64 and 8x16x2048x128 with Sk from a quarter to twice Sq (persistent configs)
"""
import argparse
import json

import numpy as np
import torch

import attnbench
from attnbench import sdpa
from kernels_grid import time_side_by_side

PRESETS = {  # (B, H, Sq, Sk, D)
    "short": [(4, 8, 512, sk, 64) for sk in (128, 256, 384, 512)] + [(4, 8, 128, 512, 64), (4, 8, 256, 512, 64)],
    "tile": [(16, 16, 1024, sk, 64) for sk in (256, 512, 1024, 2048)] +
            [(8, 16, 2048, sk, 128) for sk in (512, 1024, 2048, 4096)],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="short", choices=sorted(PRESETS))
    ap.add_argument("--kernels", default="wgmma")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--max-seconds", type=float, default=0.3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    stream = torch.cuda.Stream()
    rows = []
    with torch.cuda.stream(stream):
        for B, H, Sq, Sk, D in PRESETS[a.preset]:
            q, k, v = sdpa.random_inputs(B, H, H, Sq, Sk, D, sdpa.DTYPES[a.dtype], 0, "cuda")
            names, raw = time_side_by_side(q, k, v, a.causal, a.kernels.split(","), ("cudnn",), stream,
                                           a.max_seconds, floor=True)
            med = {n: 1e6 * float(np.median(t)) for n, t in zip(names, raw["times"])}
            rows.append(dict(B=B, H=H, Sq=Sq, Sk=Sk, D=D, median_us=med))
            print(f"{B}x{H} Sq={Sq:<5} Sk={Sk:<5} D={D:<4}" + "  ".join(f"{n} {m:7.2f}" for n, m in med.items()),
                  flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(dict(device=attnbench.device_info(), dtype=a.dtype, causal=a.causal, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
