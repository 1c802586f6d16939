"""Report: summaries checked by hand, JSON round trip, CSV, Markdown, HTML, plots, merge and compare.

The Results are built as attnbench.run builds them (real summarize, ratio_ci,
speedup_gate and verdict, in C) from synthetic samples whose medians are known
exactly, so every number can be checked by hand.  test_multi.py and
test_cli.py import the builders from here.
"""
import csv
import doctest
import io
import json
import math
import os

import numpy as np
import pytest

import attnbench
import attnbench.cli
import attnbench.report
from attnbench.grid import load_grid, parse_grid
from attnbench.report import Entry, Report, compare, merge, result_from_dict
from attnbench.result import Candidate, Comparison, Result

# 41 samples spread +-1% around 1: the median is exactly 1, and a bootstrap CI of a
# median ratio is well inside a 2% band.
SPREAD = np.linspace(0.99, 1.01, 41)
BASE_US = 10.0


def fake_result(shape=(1, 8, 512, 64), impl="mma", dtype="bfloat16", causal=False, backends=("default", "flash"),
                reference="default", speedups=None, correct=True, kernel_samples=None, Sk=None, Hkv=None,
                threshold=0.95, device=0, unsupported=(), **_):
    """A Result like run()'s: kernel median BASE_US, backend b's median BASE_US * speedups[b]."""
    B, H, S, D = shape
    Sk, Hkv = Sk or S, Hkv or H
    if reference is None and backends:  # as run() picks it
        reference = "default" if "default" in backends else backends[0]
    speedups = speedups or {b: 1.2 for b in backends}
    flops = 4.0 * B * H * S * Sk * D * (0.5 if causal else 1.0)
    kern = SPREAD * BASE_US * 1e-6 if kernel_samples is None else np.asarray(kernel_samples, dtype=float)
    cands, comps = {}, {}
    if correct:
        cands[f"attnbench:{impl}"] = Candidate(f"attnbench:{impl}", "kernel", kern, attnbench.summarize(kern * 1e6),
                                               flops / np.median(kern) / 1e12, 1.0, 0.001)
        for b in backends:
            if b in unsupported:
                continue
            t = SPREAD * BASE_US * 1e-6 * speedups[b]
            cands[f"sdpa:{b}"] = Candidate(f"sdpa:{b}", "backend", t, attnbench.summarize(t * 1e6),
                                           flops / np.median(t) / 1e12, 1.0, 0.001)
            ratio, lo, hi = attnbench.ratio_ci(kern, t)
            g = attnbench.speedup_gate(kern, t, threshold=threshold)
            comps[b] = Comparison(f"sdpa:{b}", ratio, lo, hi, 1 / ratio, 1 / hi, 1 / lo, g,
                                  attnbench.verdict(1 / ratio))
    gate = comps[reference].gate["passed"] if reference in comps else None
    if correct and reference in unsupported:  # as run(): nothing to beat is a failed speedup gate
        gate = False
    return Result(shape={"B": B, "Hq": H, "Hkv": Hkv, "Sq": S, "Sk": Sk, "D": D}, dtype=dtype, causal=causal,
                  scale=D ** -0.5, impl=impl, config=None, seed=0, flops=flops, bytes=1e6, candidates=cands,
                  comparisons=comps,
                  correctness={"passed": correct, "max_abs_error": 1e-3 if correct else 0.5, "tolerance": 2e-3,
                               "notes": [] if correct else ["the candidate's max error 0.5 exceeds the tolerance"],
                               "unsupported": {}},
                  gates={"passed": bool(correct and gate), "speedup": gate, "correctness": correct,
                         "reference": reference},
                  timing={"mode": "cold", "stop_reason": "converged", "sm_mhz": np.full(41, 1980.0)},
                  environment={"gpu": {"device": device, "name": "Fake H200", "sm_count": 132}, "torch": "2.11",
                               "torch_cuda": "13.0", "cudnn": 91900},
                  backends=list(backends), wall_seconds=0.1)


def entries_for(grid, behaviour):
    """Entries for every case of `grid`: behaviour(case) -> dict of fake_result kwargs, or an error string."""
    out = []
    for i, c in enumerate(grid.cases):
        b = behaviour(c)
        if isinstance(b, str):
            out.append(Entry(i, c, error=b, device=0))
        else:
            kw = {"impl": "mma" if c.impl == "auto" else c.impl, "dtype": c.dtype, "causal": c.causal,
                  "backends": c.backends, "reference": c.reference, "Sk": c.Sk, "Hkv": c.Hkv, **b}
            out.append(Entry(i, c, result=fake_result(c.shape, **kw), device=0))
    return out


GRID4 = """
name = "four"
backends = ["default", "flash"]
[[matrix]]
shapes = [[1, 8, 512, 64], [2, 8, 1024, 128]]
causal = [false, true]
"""


def four_report():
    """Four cases vs default and flash, speedups chosen by hand (see test_summary_by_hand)."""
    g = parse_grid(GRID4, source="four.toml")
    table = {0: {"default": 2.0, "flash": 1.0}, 1: {"default": 0.5, "flash": 1.2},
             2: {"default": 1.0, "flash": 1.5}}
    behaviour = {c.key: table.get(i) for i, c in enumerate(g.cases)}
    return Report(g, entries_for(g, lambda c: {"speedups": behaviour[c.key]} if behaviour[c.key]
                                 else "RuntimeError: CUDA error: an illegal memory access"))


def test_docstring_examples_run():
    assert doctest.testmod(attnbench.report, optionflags=doctest.ELLIPSIS).failed == 0


def test_summary_by_hand():
    r = four_report()
    assert r.totals() == {"cases": 4, "errors": 1, "correct": 3, "timed": 3, "passed": 1}
    rows = {(row["kernel"], row["backend"]): row for row in r.summary()}
    # the case that failed before choosing a kernel stays under the kernel it asked for
    assert set(rows) == {("mma", "default"), ("mma", "flash"), ("auto", None)}
    err = rows["auto", None]
    assert (err["cases"], err["errors"], err["correct"], err["timed"], err["geomean"]) == (1, 1, 0, 0, None)
    d, f = rows["mma", "default"], rows["mma", "flash"]
    # vs default: speedups 2.0, 0.5, 1.0
    assert d["cases"] == 3 and d["errors"] == 0 and d["correct"] == 3 and d["timed"] == 3
    assert d["geomean"] == pytest.approx(1.0) and d["mean"] == pytest.approx(3.5 / 3)
    assert d["min"] == pytest.approx(0.5) and d["max"] == pytest.approx(2.0)
    assert (d["wins"], d["ties"], d["losses"]) == (1, 1, 1)
    assert d["gate_passed"] == 1        # only 2.0 is below 0.95x with the CI under 1
    # vs flash: speedups 1.0, 1.2, 1.5
    assert f["geomean"] == pytest.approx((1.0 * 1.2 * 1.5) ** (1 / 3)) and f["mean"] == pytest.approx(3.7 / 3)
    assert (f["wins"], f["ties"], f["losses"], f["gate_passed"]) == (2, 1, 0, 2)


def test_summary_of_a_kernel_never_timed():
    g = load_grid("mission")
    r = Report(g, entries_for(g, lambda c: {"correct": False}))
    (row,) = r.summary()
    assert row["backend"] is None and row["timed"] == 0 and row["correct"] == 0 and row["cases"] == 4
    assert "| mma | — | 0 |" in r.to_markdown()


def test_json_round_trip(tmp_path):
    r = four_report()
    d = json.loads(r.to_json())
    assert d["schema"] == attnbench.report.REPORT_SCHEMA and d["kind"] == "attnbench.report"
    assert d["grid"]["name"] == "four" and len(d["grid"]["cases"]) == 4 and d["shard"] is None
    assert d["environment"]["python"] and d["gpus"] == [{"host": None, "device": 0, "name": "Fake H200"}]
    assert d["software"] == {"torch": "2.11", "torch_cuda": "13.0", "cudnn": "91900"}
    assert d["totals"]["errors"] == 1 and len(d["summary"]) == 3
    assert d["entries"][3]["error"].startswith("RuntimeError") and d["entries"][3]["result"] is None
    assert len(d["entries"][0]["result"]["candidates"]["attnbench:mma"]["samples_s"]) == 41
    out = r.save(tmp_path, plots=False)
    back = Report.load(tmp_path / "report.json")
    assert back.path == str(tmp_path / "report.json") and back.grid == r.grid
    assert back.to_dict() == {**d, "created": back.created}
    assert back.summary() == r.summary()
    r0, b0 = r.entries[0].result, back.entries[0].result
    assert np.array_equal(r0.candidates["attnbench:mma"].samples, b0.candidates["attnbench:mma"].samples)
    assert json.loads(b0.to_json()) == json.loads(r0.to_json())
    assert out["files"] == [str(tmp_path / f"report.{x}") for x in ("json", "csv", "md")]
    no_samples = json.loads(r.to_json(samples=False))
    assert "samples_s" not in no_samples["entries"][0]["result"]["candidates"]["sdpa:flash"]
    assert result_from_dict(no_samples["entries"][0]["result"]).candidates["sdpa:flash"].samples.size == 0


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update(kind="other"), "not an attnbench report"),
    (lambda d: d.update(schema=99), "schema: version 99 is newer"),
    (lambda d: d["entries"][0].update(index=17), "index 17 is not a case"),
    (lambda d: d["entries"][0].update(key="1x1x1x1 bf16 auto"), "is not the grid's case"),
    (lambda d: d["entries"].append(dict(d["entries"][0])), "appears twice"),
    (lambda d: d["entries"][0]["result"].pop("candidates"), r"entries\[0\].result: malformed"),
    (lambda d: d["grid"]["cases"][0].update(B=3), "fingerprint"),
])
def test_load_rejects_bad_files(tmp_path, mutate, message):
    d = json.loads(four_report().to_json())
    mutate(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=message) as e:
        Report.load(p)
    assert str(e.value).startswith(str(p))


def test_load_missing_and_not_json(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        Report.load(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        Report.load(tmp_path / "x.json")


def test_csv_one_row_per_case_and_candidate():
    rows = list(csv.DictReader(io.StringIO(four_report().to_csv())))
    assert tuple(rows[0]) == Report.CSV_COLUMNS
    assert len(rows) == 3 * 3 + 1        # three timed cases x (kernel + 2 backends), one error row
    first = [r for r in rows if r["index"] == "0"]
    assert [r["candidate"] for r in first] == ["attnbench:mma", "sdpa:default", "sdpa:flash"]
    assert float(first[0]["median_us"]) == pytest.approx(BASE_US) and first[0]["speedup"] == ""
    assert float(first[1]["speedup"]) == pytest.approx(2.0) and first[1]["verdict"] == "Excellent"
    assert first[1]["gate_passed"] == "True" and first[0]["correct"] == "True"
    err = [r for r in rows if r["index"] == "3"][0]
    assert err["candidate"] == "" and err["error"].startswith("RuntimeError") and err["correct"] == "False"
    assert err["case"] == "2x8x1024x128 bf16 causal auto" and err["D"] == "128"


def test_markdown_and_html():
    r = four_report()
    md = r.to_markdown()
    assert md.startswith("# attnbench report: four")
    assert "**4 of 4 cases: 3 correct, 3 timed, 1 passed every gate, 1 error.**" in md
    assert "| mma | sdpa:default | 3 | 1.000 | 1.167 | 0.500 | 2.000 | 1 | 1 | 1 | 1/3 | 3/3 | 0 |" in md
    assert "| auto | — | 0 | — | — | — | — | 0 | 0 | 0 | 0/0 | 0/1 | 1 |" in md
    assert "| 0 | 1x8x512x64 bf16 auto | mma | PASS | 10.00 | default (ref) | 20.00 | 2.000 [" in md
    assert "Excellent | PASS |" in md and "Regression | FAIL |" in md
    assert "- #3 2x8x1024x128 bf16 causal auto: RuntimeError: CUDA error" in md
    assert str(r) == md and "Report four" in repr(r)
    h = r._repr_html_()
    assert h.startswith("<div>") and "<table>" in h and "sdpa:flash" in h and "illegal memory" in h


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    out = four_report().save(tmp_path, stem="four")
    assert out["note"] is None
    for name in ("four-speedup.png", "four-tflops.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert "![four-speedup.png](four-speedup.png)" in (tmp_path / "four.md").read_text()
    empty = Report(load_grid("mission"), [])
    assert empty.save(tmp_path / "empty")["note"] is None


def test_no_matplotlib_gives_a_note(tmp_path, monkeypatch):
    import builtins
    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib here")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_mpl)
    out = four_report().save(tmp_path)
    assert out["note"] == attnbench.report.PLOT_NOTE
    assert not list(tmp_path.glob("*.png")) and "plots skipped" in (tmp_path / "report.md").read_text()


# ---- merge ------------------------------------------------------------------------------

def _pieces(n):
    r = four_report()
    return [Report(r.grid, [e for e in r.entries if e.index in r.grid.shard(k, n)], shard=(k, n), path=f"p{k}.json")
            for k in range(1, n + 1)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_merge_joins_shards_in_case_order(n):
    pieces = _pieces(n)
    m = merge(pieces[::-1])
    assert [e.index for e in m.entries] == [0, 1, 2, 3] and m.complete and m.shard is None
    assert m.summary() == four_report().summary()
    assert [p["file"] for p in m.environment["merged_from"]] == [f"p{k}.json" for k in range(n, 0, -1)]


def test_merge_rejects_overlaps_gaps_and_other_grids():
    a, b = _pieces(2)
    with pytest.raises(ValueError, match=r"case #0 \(1x8x512x64 bf16 auto\) is in both p1.json and p1.json"):
        merge([a, a, b])
    with pytest.raises(ValueError, match=r"do not cover grid 'four': 2 of its 4 cases are missing: #1 .*#3"):
        merge([a])
    other = Report(load_grid("mission"), [], path="m.json")
    with pytest.raises(ValueError, match="m.json comes from grid 'mission'.*p1.json from grid 'four'"):
        merge([a, other])
    with pytest.raises(ValueError, match="at least one"):
        merge([])


# ---- compare ----------------------------------------------------------------------------

def _single(kernel_samples, correct=True, impl="mma"):
    g = parse_grid("[[case]]\nshape = [1, 8, 512, 64]", source="one.toml")
    return Report(g, entries_for(g, lambda c: {"kernel_samples": kernel_samples, "correct": correct, "impl": impl}))


@pytest.mark.parametrize("factor,status", [(0.9, "FAST"), (1.0, "SAME"), (1.001, "SAME"), (1.1, "SLOW")])
def test_compare_statuses(factor, status):
    old = _single(SPREAD * BASE_US * 1e-6)
    new = _single(SPREAD * BASE_US * 1e-6 * factor)
    c = compare(old, new, tolerance=0.02)
    (row,) = c.rows
    assert row.status == status and row.ratio == pytest.approx(factor)
    assert row.low <= row.ratio <= row.high and row.ref_ratio == pytest.approx(1.0)
    assert c.passed == (status != "SLOW")
    assert c.counts[status] == 1


def _drifted(kernel_factor, ref_factor):
    """One case whose kernel moved by kernel_factor and its reference backend by ref_factor."""
    g = parse_grid("[[case]]\nshape = [1, 8, 512, 64]", source="one.toml")
    return Report(g, entries_for(g, lambda c: {"kernel_samples": SPREAD * BASE_US * 1e-6 * kernel_factor,
                                               "speedups": {b: 1.2 * ref_factor for b in ("default", "flash", "efficient", "cudnn", "math")}}))


def test_compare_divides_out_the_reference_drift():
    old, new = _drifted(1.0, 1.0), _drifted(1.03, 1.03)   # the machine got 3% slower, the kernel did not
    (row,) = compare(old, new, tolerance=0.02).rows
    assert row.status == "SAME" and row.ratio == pytest.approx(1.0) and row.ref_ratio == pytest.approx(1.03)
    assert "drift" in row.note
    (row,) = compare(old, new, tolerance=0.02, normalize=False).rows
    assert row.status == "SLOW" and row.ratio == pytest.approx(1.03)
    (row,) = compare(old, _drifted(1.10, 1.0), tolerance=0.02).rows   # the kernel alone got slower
    assert row.status == "SLOW"


def test_compare_uncertain_with_noisy_samples():
    old = _single(np.array([5.0, 10.0, 15.0]) * 1e-6)
    new = _single(np.array([5.5, 10.0, 16.0]) * 1e-6)
    c = compare(old, new)
    assert c.rows[0].status == "UNCERTAIN" and c.passed


def test_compare_missing_new_and_markdown():
    old = four_report()
    new = Report(old.grid, [e for e in old.entries if e.index != 1])
    g2 = parse_grid(GRID4 + "[[case]]\nshape = [4, 4, 64, 64]\n", source="five.toml")
    extra = entries_for(g2, lambda c: {})[4]
    new.entries.append(extra)
    c = compare(old, new)
    status = {r.key: r.status for r in c.rows}
    assert status == {"1x8x512x64 bf16 auto": "SAME", "1x8x512x64 bf16 causal auto": "MISSING",
                      "2x8x1024x128 bf16 auto": "SAME", "2x8x1024x128 bf16 causal auto": "NEW",
                      "4x4x64x64 bf16 auto": "NEW"}
    assert not c.passed and [r.key for r in c.failures] == ["1x8x512x64 bf16 causal auto"]
    md = c.to_markdown()
    assert "| 1x8x512x64 bf16 causal auto | mma → — | 10.00 | — | — | **MISSING** |" in md
    assert "FAIL: 0 slower, 1 missing" in md and str(c) == md


def test_compare_failed_correctness_is_missing_and_kernel_change_shown():
    old = _single(SPREAD * 1e-5, impl="cublas")
    new = _single(SPREAD * 1e-5, correct=False)
    (row,) = compare(old, new).rows
    assert row.status == "MISSING" and row.note == "failed its correctness check"
    (row,) = compare(old, _single(SPREAD * 1e-5)).rows
    assert row.status == "SAME" and "cublas → mma" in compare(old, _single(SPREAD * 1e-5)).to_markdown()


def test_compare_needs_samples(tmp_path):
    r = _single(SPREAD * 1e-5)
    p = tmp_path / "r.json"
    p.write_text(r.to_json(samples=False))
    with pytest.raises(ValueError, match=r"r.json: case '1x8x512x64 bf16 auto' keeps no raw samples"):
        compare(Report.load(p), r)


def test_speedup_math_matches_the_c_gates():
    r = four_report().entries[0].result
    c = r.comparisons["default"]
    assert c.speedup == pytest.approx(2.0) and c.speedup_low < 2.0 < c.speedup_high
    assert math.isclose(c.gate["ratio"], 0.5, rel_tol=1e-12) and c.gate["passed"]
    assert os.path.basename(attnbench.report.__file__) == "report.py"


@pytest.mark.parametrize("damage", [
    lambda d: d.__setitem__("shard", [1, 2]),
    lambda d: d.__setitem__("shard", {"k": 1}),
    lambda d: d.__setitem__("entries", 5),
])
def test_a_malformed_report_is_a_value_error(tmp_path, damage):
    d = json.loads(_single(SPREAD * 1e-5).to_json())
    damage(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="bad.json"):
        Report.load(p)
    assert attnbench.cli.main(["compare", str(p), str(p)]) == 2


def test_json_has_no_nan_or_infinity():
    r = _single(SPREAD * 1e-5)
    r.entries[0].result.correctness["max_rel"] = float("inf")
    text = r.to_json()
    assert "Infinity" not in text and "NaN" not in text
