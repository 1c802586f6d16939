"""Small cases for compute-sanitizer: every kernel on tails, causal, GQA and Sq != Sk.

Run through benchmarks/sanitize.sh (memcheck, racecheck, synccheck, initcheck).
Inputs come from torch; outputs are written by attnbench's kernels only.
"""
import itertools
import sys

import torch

import attnbench

# (Sq, Sk, Hq, Hkv).  The third has more 128- and 192-row tiles (216, 144) than an
# H200 has SMs, so the persistent configs run their cross-tile paths under the tools; the
# last (576 and 432 tiles, a partial last query block) also runs the rotated non-causal
# order (wgmma.cu, pick_rotation picks 1 for m128 and m192 there).
CASES = [(1, 1, 2, 2), (17, 17, 2, 2), (300, 300, 72, 8), (65, 130, 4, 2), (130, 65, 2, 2), (200, 200, 4, 1),
         (400, 200, 144, 8)]
# Keys 30x larger from key 300 and 90x from key 500 (the last case): a later block's exp2 overflows
# against wgmma's running max, so its rare path recomputes S from global memory (softmax_stale).
STEPS = (130, 700, 4, 2)
# The first 128 keys' scores about 160 log2 units below the rest: wgmma's first blocks, taken against a
# running max of 0 (seed_first), underflow, so they too recompute S and go max first.
DEEP = (150, 400, 4, 2)


def main():
    # "impl" or "impl@config", comma-separated; default: every kernel in its default config
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else [k["name"] for k in attnbench.kernels()]
    cases = CASES[: int(sys.argv[2])] if len(sys.argv) > 2 else CASES + [STEPS, DEEP]  # fewer for slow tools
    for impl, dtype, D, causal, (Sq, Sk, Hq, Hkv) in itertools.product(
            names, (torch.float16, torch.bfloat16), (64, 128), (False, True), cases):
        g = torch.Generator(device="cuda").manual_seed(Sq * 7 + Sk)
        q = torch.randn(1, Hq, Sq, D, device="cuda", generator=g).to(dtype)
        k = torch.randn(1, Hkv, Sk, D, device="cuda", generator=g).to(dtype)
        v = torch.randn(1, Hkv, Sk, D, device="cuda", generator=g).to(dtype)
        if (Sq, Sk, Hq, Hkv) == STEPS:
            k[:, :, 300:] *= 30
            k[:, :, 500:] *= 3
        if (Sq, Sk, Hq, Hkv) == DEEP:
            q[..., 0] += 6
            k[:, :, :128, 0] -= 150 * (D / 64) ** 0.5
        name, _, config = impl.partition("@")
        # Outputs poisoned with NaN: an element the kernel does not write stays NaN and fails the asserts
        # below under every tool.  (initcheck alone cannot tell: it does not see writes by the TMA unit, so
        # a torch.empty output stored by wgmma's TMA_O configs reads as uninitialized to it.)
        out = torch.full((1, Hq, Sq, D), float("nan"), device="cuda", dtype=dtype)
        out, lse = attnbench.attention(q, k, v, causal=causal, impl=name, config=config or None, out=out,
                                       return_lse=True)
        # and without lse: a config may take another instantiation then (wgmma's RS configs do)
        out2 = torch.full_like(out, float("nan"))
        attnbench.attention(q, k, v, causal=causal, impl=name, config=config or None, out=out2)
        torch.cuda.synchronize()
        assert not torch.isnan(out).any() and not torch.isnan(lse).any(), (impl, dtype, D, causal, Sq, Sk)
        assert not torch.isnan(out2).any(), (impl, dtype, D, causal, Sq, Sk)
    print(f"sanitize_cases: {len(names)} kernels x {2 * 2 * 2 * len(cases)} cases ran, each with and without lse")


if __name__ == "__main__":
    main()
