"""SASS checks of the wgmma kernels' main loops, no GPU needed.

    python benchmarks/sass_check.py [--cuobjdump PATH] [OBJECT]

OBJECT is a compiled kernels/wgmma.cu (default: the newest build/nvcc/wgmma-*.o that setup.py left).
For every sm_90a instantiation this prints its main loop: the backward branch whose body holds the
HGMMAs. It prints the loop's size, its HGMMA and MUFU counts, and where the wait for P V
(`WARPGROUP.DEPBAR.LE gsb0, 0x0`) sits relative to the softmax's MUFUs.

ptxas hoists a lone wgmma wait to the top of its basic block. That put the wait for P_{j-1} V_{j-1}
before the softmax of S_j and lost the intra-warpgroup overlap (benchmarks/NOTES.md, Kernels II, third
session, run 14). The loop holds three softmaxes of BN/2 exp2 per thread: the max-first one of a warp
not yet seeded and softmax_stale, both of which must come before the wait, and the rare path's redo
(redo_softmax), which comes after it by design. Exit status 1 when an overlapped config's loop (every
tile_cfg with OVERLAP and SINK) waits for P V before BN of its MUFUs.

cuobjdump ships with the CUDA toolkit. Where it is missing, it comes in the nvidia-cuda-cuobjdump wheel
(`pip download --no-deps nvidia-cuda-cuobjdump`, then unzip it).
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

_INT = r"(?:\(int\))?(\d+)"
_BOOL = r"(true|false|\(bool\)[01])"
# D, NC, BN, STAGES, then OVERLAP, PINGPONG, PERSIST, OWN, SINK, and the parameters a later tile_cfg
# adds (TMA_O, then SPLIT and MINB).
CFG = re.compile(r"tile_cfg<" + ", ".join([_INT] * 4 + [_BOOL] * 5) +
                 r"((?:, (?:true|false|\(bool\)[01]|(?:\(int\))?\d+))*)>")
INSN = re.compile(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?);")
BRANCH = re.compile(r"BRA[^ ]*\s+.*?0x([0-9a-f]+)")


def functions(sass):
    """(name, [(address, instruction)]) per function of a cuobjdump -sass listing."""
    for block in re.split(r"\n\s+Function : ", sass)[1:]:
        name = block.split("\n", 1)[0].strip()
        yield name, [(int(m.group(1), 16), m.group(2)) for m in map(INSN.match, block.split("\n")) if m]


def main_loop(insns):
    """The K/V loop: the shortest backward-branch body with HGMMAs and a softmax's MUFU.EX2s, or None."""
    index = {a: i for i, (a, _) in enumerate(insns)}
    best = None
    for i, (a, text) in enumerate(insns):
        m = BRANCH.search(text)
        if not m or int(m.group(1), 16) > a or int(m.group(1), 16) not in index:
            continue
        body = insns[index[int(m.group(1), 16)]:i + 1]
        if (any("HGMMA" in t for _, t in body) and sum("MUFU.EX2" in t for _, t in body) >= 16
                and (best is None or len(body) < len(best))):
            best = body
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("object", nargs="?")
    ap.add_argument("--cuobjdump", default=shutil.which("cuobjdump") or "/usr/local/cuda/bin/cuobjdump")
    a = ap.parse_args()
    obj = a.object or max(glob.glob("build/nvcc/wgmma-*.o"), key=os.path.getmtime, default=None)
    if obj is None:
        sys.exit("sass_check: no object given and no build/nvcc/wgmma-*.o (build the package first)")
    if not os.path.exists(a.cuobjdump):
        sys.exit(f"sass_check: cuobjdump not found at {a.cuobjdump} (see --help)")
    sass = subprocess.run([a.cuobjdump, "-sass", obj], capture_output=True, text=True, check=True).stdout
    names = subprocess.run(["c++filt"], input="\n".join(n for n, _ in functions(sass)), capture_output=True,
                           text=True, check=True).stdout.split("\n")
    bad = checked = 0
    for (_, insns), name in zip(functions(sass), names):
        m = CFG.search(name)
        if m is None or "attn_fwd_wgmma" not in name:
            continue
        D, NC, BN, ST, overlap, pp, persist, own, sink = (int(g) if g.isdigit() else int(g in ("true", "(bool)1"))
                                                          for g in m.groups()[:9])
        dtype = "bf16" if "bfloat16" in name else "fp16"
        extra = [g.strip() for g in m.group(10).split(",")[1:]]
        split = extra[1].replace("(int)", "") if len(extra) > 1 else "1"
        loop = main_loop(insns)
        if loop is None:
            continue
        checked += 1
        text = [t for _, t in loop]
        mufu = [i for i, t in enumerate(text) if "MUFU.EX2" in t]
        waits = [i for i, t in enumerate(text) if "WARPGROUP.DEPBAR.LE gsb0, 0x0" in t]
        hgmma = sum("HGMMA" in t for t in text)
        where = "-"
        if overlap and waits and mufu:
            before = sum(m < waits[0] for m in mufu)
            early = before < BN
            where = (f"after {before} MUFUs (of {len(mufu)}), " +
                     ("before both softmaxes" if early else "after both softmaxes"))
            if early and sink:
                bad += 1
                where += "  <-- overlap lost"
        print(f"D={D:3} NC={NC} BN={BN:3} stages={ST} ov={overlap} pp={pp} persist={persist} own={own} "
              f"sink={sink} split={split} {dtype}: loop {len(text)} instructions, HGMMA {hgmma}, MUFU {len(mufu)}; "
              f"wait for P V {where}")
    if checked == 0:
        sys.exit("sass_check: no wgmma main loop recognized in the object (has tile_cfg's signature changed?)")
    if bad:
        print(f"sass_check: {bad} overlapped loop(s) wait for P V before the softmax ends", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
