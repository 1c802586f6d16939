"""Summaries of benchmarks/wgmma_trace.cu's timelines (trace_CONFIG.bin).

    python benchmarks/wgmma_trace.py OUTDIR/trace_*.bin

Per config: the CTAs' entry skew and end times (%globaltimer, ns from the first entry), the lives of
the first- and second-resident CTA of each SM, and per event the median clock64 cycles from each CTA's
entry.  Events (kernels/wgmma.cu, AB_TRACE):
  every warp: 1 past the first barrier;  producer (warp 0): 2 + j just before K block j's load
  consumer warps: 2 registers raised, 3 Q landed, then per block i of the warp's loop 4 + 3i S_i
  complete, 5 + 3i P_i packed, 6 + 3i P_i V_i complete; 16 past the loop (split tiles: tile decoded),
  17 partials stored (splits 1..) or read back (split 0), 28 merge done, 18 lse written,
  19-20 O staged, 31 O stored.
Then per SM: how much later the second-resident CTA ends than the first, the SMs that hold one CTA, and the
SMs that end last (CTA = linear block index).
"""
import os
import sys

import numpy as np

WARPS, EVENTS, CTAS = 20, 32, 512
CONSUMER_EVENTS = [1, 2, 3] + list(range(4, 16)) + [16, 17, 28, 18, 19, 20, 31]


def summarize(path):
    t = np.fromfile(path, dtype=np.int64).reshape(-1, WARPS, EVENTS)
    cta = np.where(t[:, 0, 0] != 0)[0]
    t = t[cta]
    name = os.path.basename(path)[len("trace_"):-len(".bin")]
    if len(t) == 0:
        print(f"== {name}: no CTA recorded")
        return
    entry_ns = t[:, 0, 30]
    end_ns = t[:, 4:, 27].max(axis=1)
    base = entry_ns.min()
    sm = t[:, 0, 29]
    # Each SM's CTAs in order of entry; a tie (%globaltimer ticks by 32 ns) goes to the lower block index,
    # the one dispatched first.
    on_sm = [j[np.lexsort((cta[j], entry_ns[j]))] for j in (np.where(sm == s)[0] for s in np.unique(sm))]
    second = np.zeros(len(t), bool)  # the later of two CTAs on one SM
    for j in on_sm:
        if len(j) == 2:
            second[j[1]] = True
    print(f"== {name}: {len(t)} CTAs; entry skew p50 {np.median(entry_ns - base):.0f} max "
          f"{(entry_ns - base).max():.0f} ns; ends p50 {np.median(end_ns - base):.0f} max {(end_ns - base).max():.0f} ns")
    for label, sel in (("first-resident", ~second), ("second-resident", second)):
        if sel.any():
            print(f"  {label:16s} CTAs {sel.sum():4d}: life p50 {np.median((end_ns - entry_ns)[sel]):.0f} ns, "
                  f"end max {(end_ns - base)[sel].max():.0f} ns")
    c0 = t[:, 0, 0]

    def med(w, e):
        v = t[:, w, e]
        ok = v != 0
        return int(np.median(v[ok] - c0[ok])) if ok.any() else -1

    print(f"  producer  sync {med(0, 1)} " + " ".join(f"K{j}:{med(0, 2 + j)}" for j in range(8)))
    print("  warp   " + " ".join(f"{e:>6d}" for e in CONSUMER_EVENTS))
    warps = int((t[0, :, 0] != 0).sum())
    for w in range(4, warps, 4):
        print(f"  {w:4d}   " + " ".join(f"{med(w, e):6d}" for e in CONSUMER_EVENTS))
    per_sm(t, cta, end_ns - base, sm, on_sm)


def per_sm(t, cta, end, sm, on_sm):
    """Second- against first-resident ends, one-CTA SMs, and the five SMs that end last (ns from the first entry;
    on_sm: each SM's CTAs in order of entry)."""
    q = t[:, 4, 3] - t[:, 0, 0]  # Q landed, cycles from the CTA's entry (first consumer warp)
    pairs = [end[j[1]] - end[j[0]] for j in on_sm if len(j) == 2]
    singles = [end[j[0]] for j in on_sm if len(j) == 1]
    if pairs:
        print(f"  SMs with two CTAs {len(pairs)}: second-resident ends later by p50 {np.median(pairs):.0f} ns "
              f"(p10 {np.percentile(pairs, 10):.0f}, p90 {np.percentile(pairs, 90):.0f})")
    if singles:
        print(f"  SMs with one CTA {len(singles)}: end p50 {np.median(singles):.0f} max {max(singles)} ns")
    print("  last SMs: " + "; ".join(
        f"sm {sm[j[0]]}: " + ", ".join(f"cta {cta[k]} Q {q[k]} end {end[k]}" for k in j)
        for j in sorted(on_sm, key=lambda j: -end[j].max())[:5]))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for p in sys.argv[1:]:
        summarize(p)
