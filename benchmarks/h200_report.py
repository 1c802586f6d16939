"""The H200 grid measured with attnbench.sweep and set against the anchor table of shared/ANCHORS.md.

    python benchmarks/h200_report.py [--gpus all] [--out out/h200] [--impl auto] [--max-seconds 2]
    python benchmarks/h200_report.py --report out/h200/report.json      # re-render, no GPU needed

Runs the `h200` preset (the 36 configurations of the anchor table: fp16/bf16 x 9 shapes x causal) and
writes the sweep's report (report.json with raw samples, report.csv, report.md, the speedup and TFLOP/s
plots) to --out.  Then anchors.md beside it: per case and backend, the median measured here against the
anchor's; per backend, the geometric mean of measured/anchor; and the kernel's TFLOP/s as a share of the
809 TFLOP/s matmul ceiling.  A backend further than ANCHOR_BAND from its anchor is flagged: the GPU's
state (clocks, power, other work), the software versions or the harness differ from the anchor run.
"""
import argparse
import math
import os
import sys

import attnbench
from attnbench.report import DASH, MATMUL_CEILING_TFLOPS, Report, _md_table, _write

# The anchors are medians of 50 cold samples after 10 warm-ups; attnbench adds a blocking kernel and
# round-robin sampling, which move a median by a few percent at most.  Further than 10% means a
# different machine state, not a different harness.
ANCHOR_BAND = 0.10
ANCHOR_BACKENDS = ("flash", "cudnn", "efficient", "default")
DEFAULT_ANCHORS = [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shared", "ANCHORS.md"),
                   "/work/shared/ANCHORS.md"]


def read_anchors(path):
    """{(dtype, B, H, S, D, causal): {backend: µs}} from the anchor table."""
    rows, head = {}, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[:2] == ["dtype", "B"]:
                head = cells
            elif head and len(cells) == len(head) and cells[0] in ("float16", "bfloat16"):
                rec = dict(zip(head, cells))
                key = (rec["dtype"], *(int(rec[k]) for k in "BHSD"), rec["causal"] == "yes")
                rows[key] = {b: float(rec[f"{b} µs"]) for b in ANCHOR_BACKENDS if f"{b} µs" in rec}
            elif head and not line.startswith("|"):
                head = None
    return rows


def anchors_markdown(report, anchors):
    """The measured-vs-anchor tables, and how many backends fell outside the band."""
    rows, ratios, flagged = [], {b: [] for b in ANCHOR_BACKENDS}, 0
    kernel_rows = []
    for e in sorted(report.entries, key=lambda e: e.index):
        c = e.case
        anchor = anchors.get((c.dtype, c.B, c.H, c.S, c.D, c.causal))
        if e.result is None or anchor is None:
            continue
        for b in ANCHOR_BACKENDS:
            cand = e.result.candidates.get(f"sdpa:{b}")
            if cand is None or b not in anchor:
                continue
            r = cand.summary["median"] / anchor[b]
            ratios[b].append(r)
            off = abs(r - 1.0) > ANCHOR_BAND
            flagged += off
            rows.append([c.key, b, f"{anchor[b]:.2f}", f"{cand.summary['median']:.2f}", f"{r:.3f}",
                         "**off**" if off else ""])
        k = next((x for x in e.result.candidates.values() if x.kind == "kernel"), None)
        if k is not None:
            kernel_rows.append([c.key, e.result.impl, f"{k.summary['median']:.2f}", f"{k.tflops:.1f}",
                                f"{100 * k.tflops / MATMUL_CEILING_TFLOPS:.1f}%"])
    geo = [[b, len(v), f"{math.exp(sum(map(math.log, v)) / len(v)):.3f}" if v else DASH] for b, v in ratios.items()]
    md = ["# The H200 grid against shared/ANCHORS.md", "",
          f"Measured/anchor median per backend (band ±{100 * ANCHOR_BAND:g}%; **off** = outside it).", "",
          _md_table(["backend", "cases", "geomean measured/anchor"], geo), "",
          _md_table(["case", "backend", "anchor µs", "measured µs", "measured/anchor", ""], rows), "",
          f"## The kernel against the matmul ceiling ({MATMUL_CEILING_TFLOPS:g} TFLOP/s)", "",
          _md_table(["case", "kernel", "median µs", "TFLOP/s", "of the ceiling"], kernel_rows), ""]
    return "\n".join(md), flagged


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/h200")
    ap.add_argument("--gpus", default=None, help="'all' or N: one worker per GPU")
    ap.add_argument("--impl", default=None, help="the kernel (default: the preset's 'auto')")
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--anchors", default=next((p for p in DEFAULT_ANCHORS if os.path.isfile(p)), None))
    ap.add_argument("--report", default=None, help="an existing report.json to re-render instead of measuring")
    a = ap.parse_args()
    if a.report:
        report = Report.load(a.report)
        out = os.path.dirname(a.report) or "."
    else:
        report = attnbench.sweep("h200", gpus=a.gpus, impl=a.impl,
                                 **({"max_seconds": a.max_seconds} if a.max_seconds else {}))
        out = a.out
        saved = report.save(out)
        print(f"wrote {', '.join(saved['files'])}" + (f" ({saved['note']})" if saved["note"] else ""))
    print(report.to_markdown(cases=False))
    if not a.anchors:
        print("no shared/ANCHORS.md found (pass --anchors): skipping the anchor comparison", file=sys.stderr)
        return 0
    md, flagged = anchors_markdown(report, read_anchors(a.anchors))
    path = os.path.join(out, "anchors.md")
    _write(path, md)
    print(md)
    print(f"wrote {path}; {flagged} backend median(s) outside ±{100 * ANCHOR_BAND:g}% of the anchors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
