"""A model of wgmma's persistent tile schedules: balance across CTAs, and how many heads' K/V are in flight.

    python benchmarks/sched_sim.py [--case 16x16x1024x64] [--bm 128 --bn 128] [--fixed 2.0] [--sms 132]

A prediction tool, not a measurement: it plans an order before a device run (NOTES.md quotes its figures
as predictions).  It replays the kernel's orders (kernels/wgmma.cu, next_rank and decode: the static
non-causal order with pick_rotation's rotation, the causal two_phase order handed out dynamically, and the
causal snake it replaced) and candidate orders, on a cost model:
a tile costs its key blocks (a head's last, partial query block counts its share of working consumers when
non-causal) plus `fixed` block-times (the fifth session measured about two per tile).  Per order it prints

  balance  the most loaded CTA's finish time over the mean (1.00 is perfect)
  heads    the mean number of distinct (batch, kv head) pairs whose K/V stream at once, over time
  K/V MB   that many heads' K and V, against the H200's 50 MB of L2

Orders:
  static    the kernel's static orders (rotated round robin: non-causal today; snake: causal before the
            seventh session, SCHED_STATIC in experiment builds)
  dynamic   the kernel's rank order handed out to whichever CTA frees first (an atomic counter)
  head_lpt  causal only: tiles grouped by head, heaviest first within the group, groups handed out whole
            to whichever CTA frees first, so that one head's query blocks run side by side
  two_phase causal only: the heaviest --heavy-frac of the tiles head-major (heaviest first within a
            head), then the rest heaviest first, all handed out to whichever CTA frees first: the heads
            stay together while tiles are long, and the light tail balances the finish (the kernel's
            causal order since the seventh session, at HEAVY_PCT = 70%)
"""
import argparse
import heapq
import math


def ceil_div(a, b):
    return -(-a // b)


def tiles(B, H, Sq, Sk, bm, bn, causal, consumers):
    """(rank, (head, query block), cost in key blocks) in the kernel's rank order: heaviest first when
    causal (ranks of one query block run over every head), head-major otherwise."""
    n_mb = ceil_div(Sq, bm)
    out = []
    for rank in range(n_mb * B * H):
        if causal:
            mb, bh = n_mb - 1 - rank // (B * H), rank % (B * H)
            n_end = min(Sk, min(mb * bm + bm, Sq))
            cost = ceil_div(n_end, bn)
        else:
            mb, bh = rank % n_mb, rank // n_mb
            rows = min(bm, Sq - mb * bm)
            cost = ceil_div(Sk, bn) * ceil_div(rows, 64) / consumers
        out.append((rank, (bh, mb), cost))
    return out


def pick_rotation(n_mb, bh, G, n_work, light, max_rot=3):
    """As wgmma.cu's pick_rotation: the rotation whose static assignment leaves the most loaded CTA lightest."""
    if light >= 1.0 or G <= 1 or n_work <= G:
        return 0
    rounds, rest = divmod(n_work, G)
    best, best_max = 0, None
    for k in range(max_rot + 1):
        load = [float(rounds)] * G
        for y in range(rest):
            load[(y - rounds * k) % G] += 1.0
        for h in range(bh):
            r = h * n_mb + n_mb - 1
            load[(r % G - (r // G) * k) % G] += light - 1.0
        mx = max(load)
        if best_max is None or mx < best_max - 1e-9:
            best, best_max = k, mx
    return best


def static_lists(ts, G, causal, rot):
    """CTA x's tiles, round by round, as work_rank assigns them."""
    lists = [[] for _ in range(G)]
    for i in range(ceil_div(len(ts), G)):
        for x in range(G):
            r = i * G + ((G - 1 - x if i & 1 else x) if causal else (x + i * rot) % G)
            if r < len(ts):
                lists[x].append(ts[r])
    return lists


def run_static(lists, fixed):
    """Intervals (start, end, head) per tile, each CTA running its list back to back."""
    spans = []
    for lst in lists:
        t = 0.0
        for _, (bh, _), cost in lst:
            spans.append((t, t + cost + fixed, bh))
            t += cost + fixed
    return spans


def run_dynamic(order, G, fixed):
    """Tiles handed out in `order` to whichever CTA is free first."""
    free = [(0.0, x) for x in range(G)]
    heapq.heapify(free)
    spans = []
    for _, (bh, _), cost in order:
        t, x = heapq.heappop(free)
        spans.append((t, t + cost + fixed, bh))
        heapq.heappush(free, (t + cost + fixed, x))
    return spans


def run_groups(groups, G, fixed):
    """Head groups handed out whole (heaviest group first) to whichever CTA is free first; within a group
    the tiles go to the next free CTAs one by one, so a group's tiles start close together."""
    flat = [t for grp in sorted(groups, key=lambda g: -sum(c for _, _, c in g)) for t in grp]
    return run_dynamic(flat, G, fixed)


def two_phase(ts, heavy_frac):
    """The heaviest `heavy_frac` of the tiles head-major (heaviest first within a head), then the rest in
    rank order (heaviest first)."""
    costs = sorted(c for _, _, c in ts)
    thr = costs[min(len(costs) - 1, int(len(costs) * (1 - heavy_frac)))]
    heavy = sorted((t for t in ts if t[2] >= thr), key=lambda t: (t[1][0], -t[2]))
    return heavy + [t for t in ts if t[2] < thr]


def summarize(spans, G):
    end = max(e for _, e, _ in spans)
    busy = sum(e - s for s, e, _ in spans)
    # Mean number of distinct heads in flight, sampled at every tile start.
    events = sorted(spans)
    samples = []
    for s, _, _ in events[:: max(1, len(events) // 400)]:
        samples.append(len({h for a, b, h in spans if a <= s < b}))
    return end / (busy / G), sum(samples) / len(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", default="16x16x1024x64", help="BxHxSxD (Sq = Sk = S, Hq = Hkv = H)")
    ap.add_argument("--bm", type=int, default=128)
    ap.add_argument("--bn", type=int, default=128)
    ap.add_argument("--fixed", type=float, default=2.0, help="block-times of fixed cost per tile")
    ap.add_argument("--sms", type=int, default=132)
    ap.add_argument("--heavy-frac", type=float, default=0.7, help="two_phase's head-major share of the tiles")
    a = ap.parse_args()
    B, H, S, D = map(int, a.case.split("x"))
    consumers = a.bm // 64
    kv_mb_per_head = 2 * S * D * 2 / 2 ** 20
    for causal in (False, True):
        ts = tiles(B, H, S, S, a.bm, a.bn, causal, consumers)
        G = min(a.sms, len(ts))
        n_mb = ceil_div(S, a.bm)
        rot = 0
        if not causal:
            light = ceil_div(S - (n_mb - 1) * a.bm, 64) / consumers
            rot = pick_rotation(n_mb, B * H, G, len(ts), light)
        orders = {"static": run_static(static_lists(ts, G, causal, rot), a.fixed),
                  "dynamic": run_dynamic(ts, G, a.fixed)}
        if causal:
            by_head = {}
            for t in ts:
                by_head.setdefault(t[1][0], []).append(t)
            orders["head_lpt"] = run_groups(list(by_head.values()), G, a.fixed)
            orders["two_phase"] = run_dynamic(two_phase(ts, a.heavy_frac), G, a.fixed)
        print(f"{a.case} {'causal' if causal else 'non-causal'}: {len(ts)} tiles of {a.bm}x{a.bn} on {G} CTAs"
              + (f", rotation {rot}" if not causal else ""))
        for name, spans in orders.items():
            bal, heads = summarize(spans, G)
            print(f"  {name:<9} balance {bal:.3f}   heads {heads:6.1f}   K/V {heads * kv_mb_per_head:7.1f} MB")


if __name__ == "__main__":
    main()
