"""Report: the Results of a sweep, summarized, saved (JSON, CSV, Markdown, plots), merged and compared.

A report is the unit that travels: `attnbench sweep` writes one, `attnbench
merge` joins the pieces of a grid that were measured apart (shards, GPUs,
machines), and `attnbench compare` and `attnbench gate` read two and say, case
by case, whether the kernel got faster or slower (attnbench.regression_gate on
the raw samples, which is why reports keep them by default).
"""
from __future__ import annotations

import csv
import html
import inspect
import io
import json
import math
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import sdpa
from .gate import regression_gate
from .grid import SHORT_DTYPE, Grid
from .result import Candidate, Comparison, Result, _plain

#: Version of the report JSON; Report.load refuses files of a later version.
REPORT_SCHEMA = 1
REPORT_KIND = "attnbench.report"
#: The bf16 8192^3 matmul ceiling measured on the H200 (cuBLAS via torch; shared/ANCHORS.md,
#: benchmarks/NOTES.md): what a tensor-core kernel reaches on that GPU when nothing but the
#: matmul is done, drawn on the TFLOP/s plot as the roof attention kernels work under.
MATMUL_CEILING_TFLOPS = 809.0
#: compare()'s band: regression_gate's own default (csrc/gate.h), read from its signature.
DEFAULT_TOLERANCE = inspect.signature(regression_gate).parameters["tolerance"].default
#: Statuses compare() fails on: the kernel got slower, or a case the baseline timed is gone.
FAILING = ("SLOW", "MISSING")
PLOT_NOTE = "plots skipped: matplotlib is not installed (pip install 'attnbench[plot]')"
DASH = "—"


def _f(x):
    """A float from JSON (None stands for NaN there)."""
    return float("nan") if x is None else float(x)


def _fmt(x, spec=".3f"):
    return DASH if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def result_from_dict(d):
    """Rebuild a Result from Result.to_dict() output (raw samples empty if it had none)."""
    cands = {k: Candidate(name=c["name"], kind=c["kind"], samples=np.asarray(c.get("samples_s", []), dtype=float),
                          summary=c["summary_us"], tflops=_f(c["tflops"]), bandwidth_gbs=_f(c["bandwidth_gbs"]),
                          noise=_f(c["noise"]))
             for k, c in d["candidates"].items()}
    comps = {k: Comparison(baseline=c["baseline"], ratio=_f(c["ratio"]), ratio_low=_f(c["ratio_low"]),
                           ratio_high=_f(c["ratio_high"]), speedup=_f(c["speedup"]), speedup_low=_f(c["speedup_low"]),
                           speedup_high=_f(c["speedup_high"]), gate=c["gate"], verdict=c["verdict"])
             for k, c in d["comparisons"].items()}
    timing = dict(d["timing"])
    if "sm_mhz" in timing:
        timing["sm_mhz"] = np.asarray([_f(x) for x in timing["sm_mhz"]], dtype=float)
    return Result(shape=d["shape"], dtype=d["dtype"], causal=d["causal"], scale=d["scale"], impl=d["impl"],
                  config=d["config"], seed=d["seed"], flops=d["flops"], bytes=d["bytes"], candidates=cands,
                  comparisons=comps, correctness=d["correctness"], gates=d["gates"], timing=timing,
                  environment=d["environment"], backends=d["backends"], wall_seconds=d["wall_seconds"])


def kernel_candidate(result):
    """The Candidate of the kernel under test in `result`, or None when it was not timed."""
    return next((c for c in result.candidates.values() if c.kind == "kernel"), None)


@dataclass
class Entry:
    """One case of a report: its Result, or the error that stopped it."""
    index: int                      # position in the grid
    case: object                    # grid.Case
    result: Result | None = None
    error: str | None = None
    device: int | None = None
    shard: str | None = None

    @property
    def kernel(self):
        """The kernel that ran ('auto' resolved), or the requested one if the case failed before."""
        return self.result.impl if self.result is not None else self.case.impl

    @property
    def correct(self):
        return self.result is not None and bool(self.result.correctness.get("passed"))

    @property
    def host(self):
        return (self.result.environment.get("host") if self.result is not None else None)

    def to_dict(self, samples=True):
        return {"index": self.index, "key": self.case.key, "device": self.device, "shard": self.shard,
                "error": self.error, "result": self.result.to_dict(samples) if self.result is not None else None}

    @classmethod
    def from_dict(cls, d, grid, where):
        i = d.get("index")
        if not isinstance(i, int) or not 0 <= i < len(grid):
            raise ValueError(f"{where}: entries: index {i!r} is not a case of grid {grid.name!r}")
        case = grid.cases[i]
        if d.get("key") != case.key:
            raise ValueError(f"{where}: entries[{i}]: key {d.get('key')!r} is not the grid's case {case.key!r}")
        try:
            result = result_from_dict(d["result"]) if d.get("result") is not None else None
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: entries[{i}].result: malformed ({type(e).__name__}: {e})") from None
        return cls(index=i, case=case, result=result, error=d.get("error"), device=d.get("device"),
                   shard=d.get("shard"))


def collect_environment():
    """Where a sweep ran, from the host's side (the GPU of each case is in its Result)."""
    from . import __version__
    return {"host": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "attnbench": __version__, "argv": list(sys.argv)}


def _count(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def _geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


@dataclass
class Report:
    """What a sweep measured: one Entry per case of (a shard of) a grid, with summaries and formats.

    Examples
    --------
    >>> import attnbench
    >>> from attnbench.report import Report
    >>> r = Report(attnbench.load_grid("mission"), [])
    >>> r.totals()["cases"], r.complete
    (0, False)
    """
    grid: Grid
    entries: list
    environment: dict = field(default_factory=collect_environment)
    shard: tuple | None = None
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    path: str | None = None        # the file it was loaded from, for messages

    @property
    def label(self):
        return self.path or f"grid {self.grid.name!r}"

    @property
    def results(self):
        return [e.result for e in self.entries if e.result is not None]

    @property
    def complete(self):
        """True when the entries are every case of the grid, each once."""
        return sorted(e.index for e in self.entries) == list(range(len(self.grid)))

    # ---- summaries ---------------------------------------------------------------------

    def totals(self):
        """Counts over the cases: run, errors, correct, timed, passed (correctness and speedup gate)."""
        es = self.entries
        return {"cases": len(es), "errors": sum(e.error is not None for e in es),
                "correct": sum(e.correct for e in es),
                "timed": sum(e.result is not None and bool(e.result.comparisons) for e in es),
                "passed": sum(e.result is not None and e.result.passed for e in es)}

    def summary(self):
        """One row per kernel and backend: speedups over the cases (geometric mean, mean, min, max),
        wins and losses (the 95% CI of the speedup wholly above / below 1), gate and correctness counts.

        Speedup is the backend's median time over the kernel's: above 1 the kernel is faster.
        A kernel with no timed case has one row with backend None.
        """
        groups = {}
        for e in self.entries:
            g = groups.setdefault(e.kernel, {"cases": 0, "errors": 0, "correct": 0, "backends": {}})
            g["cases"] += 1
            g["errors"] += e.error is not None
            g["correct"] += e.correct
            if e.result is not None:
                for b, comp in e.result.comparisons.items():
                    g["backends"].setdefault(b, []).append(comp)
        rows = []
        order = {b: i for i, b in enumerate(sdpa.BACKENDS)}
        for kernel, g in groups.items():
            base = {"kernel": kernel, "cases": g["cases"], "errors": g["errors"], "correct": g["correct"]}
            if not g["backends"]:
                rows.append({**base, "backend": None, "timed": 0, "geomean": None, "mean": None, "min": None,
                             "max": None, "wins": 0, "ties": 0, "losses": 0, "gate_passed": 0})
            for b in sorted(g["backends"], key=lambda b: order.get(b, len(order))):
                comps = g["backends"][b]
                s = [c.speedup for c in comps]
                wins = sum(c.speedup_low > 1.0 for c in comps)
                losses = sum(c.speedup_high < 1.0 for c in comps)
                rows.append({**base, "backend": b, "timed": len(comps), "geomean": _geomean(s),
                             "mean": sum(s) / len(s), "min": min(s), "max": max(s), "wins": wins,
                             "ties": len(comps) - wins - losses, "losses": losses,
                             "gate_passed": sum(bool(c.gate.get("passed")) for c in comps)})
        return rows

    def gpus(self):
        """The GPUs that measured the cases: unique (host, device, name) dicts."""
        seen = {}
        for e in self.entries:
            if e.result is None:
                continue
            gpu = e.result.environment.get("gpu") or {}
            key = (e.host, gpu.get("device", e.device), gpu.get("name"))
            seen.setdefault(key, {"host": key[0], "device": key[1], "name": key[2]})
        return list(seen.values())

    def software(self):
        """torch, its CUDA and cuDNN versions as the Results recorded them (a list if they differ)."""
        out = {}
        for name in ("torch", "torch_cuda", "cudnn"):
            vals = sorted({str(r.environment.get(name)) for r in self.results if r.environment.get(name) is not None})
            out[name] = vals[0] if len(vals) == 1 else (vals or None)
        return out

    # ---- JSON --------------------------------------------------------------------------

    def to_dict(self, samples=True):
        """The versioned JSON form: schema, grid, shard, environment, summary, entries (Result.to_dict)."""
        from . import __version__
        return _plain({
            "schema": REPORT_SCHEMA, "kind": REPORT_KIND, "created": self.created, "attnbench": __version__,
            "grid": self.grid.to_dict(),
            "shard": None if self.shard is None else {"k": self.shard[0], "n": self.shard[1]},
            "environment": self.environment, "gpus": self.gpus(), "software": self.software(),
            "totals": self.totals(), "summary": self.summary(), "samples": bool(samples),
            "entries": [e.to_dict(samples) for e in sorted(self.entries, key=lambda e: e.index)],
        })

    def to_json(self, samples=True, indent=1):
        return json.dumps(self.to_dict(samples), indent=indent)

    @classmethod
    def from_dict(cls, d, where="report"):
        try:
            return cls._from_dict(d, where)
        except (KeyError, TypeError, AttributeError) as e:  # a malformed file is an input error, not a crash
            raise ValueError(f"{where}: not a well-formed attnbench report ({type(e).__name__}: {e})") from e

    @classmethod
    def _from_dict(cls, d, where):
        if not isinstance(d, dict) or d.get("kind") != REPORT_KIND:
            raise ValueError(f"{where}: kind: not an attnbench report (no \"kind\": \"{REPORT_KIND}\")")
        schema = d.get("schema")
        if not isinstance(schema, int) or schema > REPORT_SCHEMA:
            raise ValueError(f"{where}: schema: version {schema!r} is newer than this attnbench reads "
                             f"({REPORT_SCHEMA}); upgrade attnbench")
        grid = Grid.from_dict(d.get("grid") or {}, where)
        shard = d.get("shard")
        entries, seen = [], set()
        for e in d.get("entries", []):
            if not isinstance(e, dict):
                raise ValueError(f"{where}: entries: each entry must be an object, got {type(e).__name__}")
            entry = Entry.from_dict(e, grid, where)
            if entry.index in seen:
                raise ValueError(f"{where}: entries: case {entry.index} ({entry.case.key}) appears twice")
            seen.add(entry.index)
            entries.append(entry)
        return cls(grid=grid, entries=entries, environment=d.get("environment") or {},
                   shard=None if shard is None else (shard["k"], shard["n"]), created=d.get("created", ""),
                   path=where)

    @classmethod
    def load(cls, path):
        """Read a report written by Report.save / `attnbench sweep` (ValueError if it is not one).

        Examples
        --------
        >>> import attnbench, tempfile, os
        >>> r = attnbench.Report(attnbench.load_grid("mission"), [])
        >>> d = tempfile.mkdtemp()
        >>> _ = r.save(d, plots=False)
        >>> attnbench.Report.load(os.path.join(d, "report.json")).grid.name
        'mission'
        """
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not JSON ({e})") from None
        return cls.from_dict(d, where=path)

    # ---- tables (Markdown, HTML and CSV share them) ------------------------------------

    def _summary_table(self):
        head = ["kernel", "vs", "timed", "geomean speedup", "mean", "min", "max", "wins", "ties", "losses",
                "gate passed", "correct", "errors"]
        rows = [[r["kernel"], "sdpa:" + r["backend"] if r["backend"] else DASH, r["timed"], _fmt(r["geomean"]),
                 _fmt(r["mean"]), _fmt(r["min"]), _fmt(r["max"]), r["wins"], r["ties"], r["losses"],
                 f"{r['gate_passed']}/{r['timed']}", f"{r['correct']}/{r['cases']}", r["errors"]]
                for r in self.summary()]
        return head, rows

    def _cases_table(self):
        head = ["#", "case", "kernel", "correct", "kernel µs", "vs", "backend µs", "speedup [CI]", "verdict", "gate"]
        rows = []
        for e in sorted(self.entries, key=lambda e: e.index):
            if e.result is None:
                rows.append([e.index, e.case.key, e.kernel, "ERROR", DASH, DASH, DASH, DASH, DASH, DASH])
                continue
            r = e.result
            kc = kernel_candidate(r)
            first = [e.index, e.case.key, r.impl, "PASS" if e.correct else "FAIL",
                     _fmt(kc.summary["median"], ".2f") if kc else DASH]
            if not r.comparisons:
                rows.append(first + [DASH] * 5)
            for j, (b, c) in enumerate(r.comparisons.items()):
                bc = r.candidates.get(c.baseline)
                ref = " (ref)" if b == r.gates.get("reference") else ""
                rows.append((first if j == 0 else [""] * 5) + [
                    b + ref, _fmt(bc.summary["median"], ".2f") if bc else DASH,
                    f"{c.speedup:.3f} [{c.speedup_low:.3f}, {c.speedup_high:.3f}]", c.verdict,
                    "PASS" if c.gate.get("passed") else "FAIL"])
        return head, rows

    def _problems(self):
        """(case label, what went wrong) for every error and correctness failure."""
        out = []
        for e in sorted(self.entries, key=lambda e: e.index):
            label = f"#{e.index} {e.case.key}"
            if e.error is not None:
                out.append((label, e.error))
            elif not e.correct:
                notes = "; ".join(e.result.correctness.get("notes", [])) or "correctness check failed"
                out.append((label, notes))
        return out

    def _headline(self):
        t = self.totals()
        part = "" if self.shard is None else f", shard {self.shard[0]}/{self.shard[1]}"
        return (f"{t['cases']} of {len(self.grid)} cases{part}: {t['correct']} correct, {t['timed']} timed, "
                f"{t['passed']} passed every gate, {_count(t['errors'], 'error')}")

    def _context(self):
        g, sw, t = self.grid, self.software(), self.grid.timing
        gpus = ", ".join(f"{x['name']} (#{x['device']}{' on ' + x['host'] if x['host'] else ''})"
                         for x in self.gpus()) or "none"
        refs = ", ".join(sorted({"sdpa:" + c.reference for c in g.cases}))
        return [f"grid `{g.name}` ({g.description or g.source}), fingerprint `{g.fingerprint}`; "
                f"{t['mode']} timing, at most {t['max_seconds']:g} s per case; speedup gate vs {refs} "
                f"(threshold {t['threshold']:g})",
                f"GPUs: {gpus}; torch {sw['torch']}, CUDA {sw['torch_cuda']}, cuDNN {sw['cudnn']}; "
                f"created {self.created}"]

    def to_markdown(self, plots=None, cases=True):
        """The report as Markdown: headline, summary per kernel and backend, every case (unless
        cases=False), problems, and the plots (file names) or the note saying why there are none."""
        lines = [f"# attnbench report: {self.grid.name}", "", *[ln + "  " for ln in self._context()], "",
                 f"**{self._headline()}.**", "", "## Summary per kernel and backend", "",
                 _md_table(*self._summary_table()), "",
                 "Speedup = backend median / kernel median (above 1: the kernel is faster); a win or a loss is a "
                 "case whose speedup CI lies wholly above or below 1; the gate asks for a median below the "
                 "threshold times the reference's with the CI's upper bound below 1."]
        if cases:
            lines += ["", "## Cases", "", _md_table(*self._cases_table())]
        problems = self._problems()
        if problems:
            lines += ["", "## Errors and correctness failures", ""]
            lines += [f"- {label}: {html.escape(why)}" for label, why in problems]
        if plots:
            lines += ["", "## Plots", ""] + [f"![{os.path.basename(p)}]({os.path.basename(p)})" if p.endswith(".png")
                                             else p for p in plots]
        return "\n".join(lines) + "\n"

    def __str__(self):
        return self.to_markdown()

    def __repr__(self):
        return f"<Report {self.grid.name}: {self._headline()}>"

    def _repr_html_(self):
        problems = "".join(f"<li>{html.escape(label)}: {html.escape(why)}</li>" for label, why in self._problems())
        return (f"<div><b>attnbench report: {html.escape(self.grid.name)}</b><br>"
                + "<br>".join(html.escape(x) for x in self._context())
                + f"<p><b>{html.escape(self._headline())}</b></p>" + _html_table(*self._summary_table())
                + "<details><summary>cases</summary>" + _html_table(*self._cases_table()) + "</details>"
                + (f"<ul>{problems}</ul>" if problems else "") + "</div>")

    #: Columns of the CSV: one row per case and timed candidate (one row for a case with none).
    CSV_COLUMNS = ("index", "case", "B", "H", "Hkv", "S", "Sk", "D", "dtype", "causal", "impl", "kernel", "config",
                   "candidate", "kind", "median_us", "p90_us", "p99_us", "iqr_us", "n_samples", "tflops",
                   "bandwidth_gbs", "speedup", "speedup_low", "speedup_high", "verdict", "gate_passed", "correct",
                   "error", "device", "host", "shard")

    def to_csv(self):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        for e in sorted(self.entries, key=lambda e: e.index):
            c = e.case
            base = {"index": e.index, "case": c.key, "B": c.B, "H": c.H, "Hkv": c.Hkv, "S": c.S, "Sk": c.Sk,
                    "D": c.D, "dtype": c.dtype, "causal": c.causal, "impl": c.impl, "kernel": e.kernel,
                    "config": c.config or "", "correct": e.correct, "error": e.error or "",
                    "device": "" if e.device is None else e.device, "host": e.host or "", "shard": e.shard or ""}
            cands = list(e.result.candidates.values()) if e.result is not None else []
            if not cands:
                w.writerow(base)
            for cand in cands:
                s = cand.summary
                row = {**base, "candidate": cand.name, "kind": cand.kind, "median_us": s["median"],
                       "p90_us": s["p90"], "p99_us": s["p99"], "iqr_us": s["iqr"], "n_samples": s["n"],
                       "tflops": cand.tflops, "bandwidth_gbs": cand.bandwidth_gbs}
                comp = e.result.comparisons.get(cand.name.split(":", 1)[1]) if cand.kind == "backend" else None
                if comp is not None:
                    row.update(speedup=comp.speedup, speedup_low=comp.speedup_low, speedup_high=comp.speedup_high,
                               verdict=comp.verdict, gate_passed=bool(comp.gate.get("passed")))
                w.writerow(row)
        return buf.getvalue()

    # ---- plots ---------------------------------------------------------------------------

    def plot_speedup(self, path):
        """Speedup of the kernel over each backend, per case, with CI whiskers (PNG at `path`)."""
        fig = _figure(max(6.0, 0.32 * len(self.entries) + 2.0), 4.8)
        ax = fig.add_subplot()
        entries = sorted(self.entries, key=lambda e: e.index)
        backends = [b for b in sdpa.BACKENDS if any(e.result and b in e.result.comparisons for e in entries)]
        width = 0.8 / max(1, len(backends))
        for j, b in enumerate(backends):
            xs, ys, lo, hi = [], [], [], []
            for x, e in enumerate(entries):
                c = e.result.comparisons.get(b) if e.result else None
                if c is not None:
                    xs.append(x - 0.4 + width * (j + 0.5))
                    ys.append(c.speedup)
                    lo.append(c.speedup - c.speedup_low)
                    hi.append(c.speedup_high - c.speedup)
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", ms=3, capsize=2, label=f"vs sdpa:{b}")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xticks(range(len(entries)))
        ax.set_xticklabels([e.case.key for e in entries], rotation=90, fontsize=6)
        ax.set_ylabel("speedup (backend time / kernel time)")
        ax.set_title(f"{self.grid.name}: kernel speedup per case, with CI")
        if backends:
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=130)
        return path

    def plot_tflops(self, path, ceiling=MATMUL_CEILING_TFLOPS):
        """TFLOP/s against S per timed candidate and head dim, one panel per dtype and mask, with the
        measured matmul ceiling drawn as a line (PNG at `path`)."""
        panels = sorted({(e.case.dtype, e.case.causal) for e in self.entries if e.result and e.result.candidates})
        names = sorted({c.name for e in self.entries if e.result for c in e.result.candidates.values()})
        colour = {n: f"C{i % 10}" for i, n in enumerate(names)}  # one colour per candidate in every panel
        dims = sorted({e.case.D for e in self.entries})
        marker = {d: "os^vDP*X"[i % 8] for i, d in enumerate(dims)}  # and one marker per head dim
        fig = _figure(5.0 * max(1, len(panels)), 4.2)
        top = ceiling
        axes = []
        for p, (dtype, causal) in enumerate(panels or [(None, None)]):
            ax = fig.add_subplot(1, max(1, len(panels)), p + 1)
            axes.append(ax)
            series = {}
            for e in self.entries:
                if e.result is None or (e.case.dtype, e.case.causal) != (dtype, causal):
                    continue
                for cand in e.result.candidates.values():
                    series.setdefault((cand.name, e.case.D), []).append((e.case.S, e.case.B, cand.tflops))
            for (name, d), pts in sorted(series.items()):
                pts.sort()
                top = max(top, max(t for _, _, t in pts))
                ax.plot([s for s, _, _ in pts], [t for _, _, t in pts], "-", marker=marker[d], ms=4, lw=1,
                        color=colour[name], label=f"{name.replace('attnbench:', '')} D={d}")
            ax.axhline(ceiling, color="black", ls="--", lw=1, label=f"matmul ceiling {ceiling:g} TFLOP/s (measured)")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("S (query length)")
            ax.set_ylabel("TFLOP/s at the median")
            ax.set_title(f"{SHORT_DTYPE.get(dtype, dtype)}{' causal' if causal else ''}" if dtype else "nothing timed")
            ax.legend(fontsize=6)
        for ax in axes:
            ax.set_ylim(0, 1.08 * top)
        fig.tight_layout()
        fig.savefig(path, dpi=130)
        return path

    # ---- files ---------------------------------------------------------------------------

    def save(self, directory, stem="report", samples=True, plots=True):
        """Write stem.json, stem.csv, stem.md and (with matplotlib) stem-speedup.png, stem-tflops.png.

        Returns
        -------
        dict
            ``files``, the paths written, and ``note``, why the plots were skipped (or None).
        """
        os.makedirs(directory, exist_ok=True)
        base = os.path.join(directory, stem)
        files, note = [], None
        _write(base + ".json", self.to_json(samples))
        _write(base + ".csv", self.to_csv())
        files += [base + ".json", base + ".csv"]
        pngs = []
        if plots:
            try:
                pngs = [self.plot_speedup(base + "-speedup.png"), self.plot_tflops(base + "-tflops.png")]
            except ImportError:
                note = PLOT_NOTE
        _write(base + ".md", self.to_markdown(plots=pngs or ([note] if note else None)))
        files += [base + ".md"] + pngs
        return {"files": files, "note": note}


def _write(path, text):
    """Write through a temporary file and a rename, so a reader never sees half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _figure(width, height):
    """A matplotlib Figure on the Agg canvas (no pyplot, so no global backend is switched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _md_table(head, rows):
    cell = lambda x: str(x).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(map(cell, head)) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(out)


def _html_table(head, rows):
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


# ---- merge ---------------------------------------------------------------------------------

def merge(reports):
    """Join reports of pieces of one grid (shards, GPUs, machines) into one, in case order.

    Raises ValueError, naming the files, when they come from different grids,
    when a case appears in two of them, or when cases of the grid are missing.

    Examples
    --------
    >>> import attnbench
    >>> from attnbench.report import Report, merge
    >>> g = attnbench.load_grid("mission")
    >>> merge([Report(g, [], shard=(1, 2)), Report(g, [], shard=(2, 2))])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the pieces do not cover grid 'mission': 4 of its 4 cases are missing: #0 1x8x512x64 fp16 auto, ...
    """
    if not reports:
        raise ValueError("merge needs at least one report")
    first = reports[0]
    owner = {}
    for r in reports:
        if r.grid.fingerprint != first.grid.fingerprint:
            raise ValueError(f"{r.label} comes from grid {r.grid.name!r} (fingerprint {r.grid.fingerprint}) but "
                             f"{first.label} from grid {first.grid.name!r} (fingerprint {first.grid.fingerprint}): "
                             "merge joins pieces of one grid run with the same options")
        for e in r.entries:
            if e.index in owner:
                raise ValueError(f"case #{e.index} ({e.case.key}) is in both {owner[e.index]} and {r.label}: "
                                 "the pieces overlap")
            owner[e.index] = r.label
    missing = [i for i in range(len(first.grid)) if i not in owner]
    if missing:
        named = ", ".join(f"#{i} {first.grid.cases[i].key}" for i in missing[:3]) + (", ..." if len(missing) > 3
                                                                                     else "")
        raise ValueError(f"the pieces do not cover grid {first.grid.name!r}: {len(missing)} of its "
                         f"{len(first.grid)} cases are missing: {named}")
    entries = sorted((e for r in reports for e in r.entries), key=lambda e: e.index)
    env = {"merged_from": [{"file": r.label, "shard": r.shard, "created": r.created, **r.environment}
                           for r in reports]}
    return Report(grid=first.grid, entries=entries, environment=env, shard=None)


# ---- compare -------------------------------------------------------------------------------

@dataclass
class CompareRow:
    key: str
    status: str                 # FAST, SAME, SLOW, UNCERTAIN, MISSING or NEW
    old_kernel: str | None = None
    new_kernel: str | None = None
    old_us: float | None = None
    new_us: float | None = None
    ratio: float | None = None  # median(new) / median(old) of the kernel
    low: float | None = None
    high: float | None = None
    ref_ratio: float | None = None  # the same for the reference backend: did the machine change?
    note: str = ""


@dataclass
class CompareResult:
    """The outcome of compare(): one row per case, and whether anything got slower or went missing."""
    baseline: str
    current: str
    tolerance: float
    rows: list

    @property
    def counts(self):
        out = {s: 0 for s in ("FAST", "SAME", "SLOW", "UNCERTAIN", "MISSING", "NEW")}
        for r in self.rows:
            out[r.status] += 1
        return out

    @property
    def failures(self):
        return [r for r in self.rows if r.status in FAILING]

    @property
    def passed(self):
        return not self.failures

    def to_markdown(self):
        head = ["case", "kernel (old → new)", "old µs", "new µs", "new/old [CI]", "status", "SDPA ref new/old",
                "note"]
        rows = []
        for r in self.rows:
            kern = (r.old_kernel if r.old_kernel == r.new_kernel
                    else f"{r.old_kernel or DASH} → {r.new_kernel or DASH}")
            ci = DASH if r.ratio is None else f"{r.ratio:.3f} [{r.low:.3f}, {r.high:.3f}]"
            rows.append([r.key, kern, _fmt(r.old_us, ".2f"), _fmt(r.new_us, ".2f"), ci,
                         f"**{r.status}**" if r.status in FAILING else r.status, _fmt(r.ref_ratio), r.note])
        c = self.counts
        tally = ", ".join(f"{k} {v}" for k, v in c.items())
        verdict = ("PASS: nothing slower, nothing missing" if self.passed else
                   f"FAIL: {c['SLOW']} slower, {c['MISSING']} missing")
        return "\n".join([f"# attnbench compare: {self.baseline} → {self.current}", "",
                          f"Band ±{100 * self.tolerance:g}% (attnbench.regression_gate on the kernel's raw samples; "
                          "SLOW and MISSING fail).", "", _md_table(head, rows), "", f"**{tally}. {verdict}.**", ""])

    def __str__(self):
        return self.to_markdown()


def _timed_kernel(entry, where):
    """The kernel's samples in `entry`, None if it has no timing; ValueError if the report dropped them."""
    if entry is None or entry.result is None:
        return None
    kc = kernel_candidate(entry.result)
    if kc is None:
        return None
    if kc.samples.size == 0:
        raise ValueError(f"{where}: case {entry.case.key!r} keeps no raw samples; compare needs them "
                         "(reports keep them unless saved with samples=False / --no-samples)")
    return kc


def _ref_median(entry):
    r = entry.result
    ref = r.gates.get("reference")
    c = r.candidates.get(f"sdpa:{ref}") if ref else None
    return None if c is None else c.summary["median"]


def compare(baseline, current, tolerance=DEFAULT_TOLERANCE, seed=0, normalize=True):
    """Case by case, did the kernel get faster or slower from `baseline` to `current`?

    Cases are matched by shape, dtype, mask and requested kernel (their key).
    Each is FAST, SAME, SLOW or UNCERTAIN by attnbench.regression_gate on the
    kernel's raw samples; MISSING when the baseline timed it and `current`
    did not (absent, an error, a failed correctness check); NEW when only
    `current` timed it.

    With `normalize` (the default), the current samples are first scaled by
    how much the case's SDPA reference backend moved between the two reports
    (its median then over now).  The reference is timed interleaved with the
    kernel in the same run, so this cancels what moved both alike (clocks,
    temperature, another tenant, a different machine of the same kind) and
    leaves what moved the kernel alone.  Measured on the H200: two identical
    runs of a 7.8 µs case moved the kernel by +2.5% and the reference by +1.5%;
    unnormalized that reads SLOW at a 2% tolerance.  Turn it off when the
    reference itself changed on purpose (a new torch or cuDNN).

    Parameters
    ----------
    baseline, current : Report
    tolerance : float
        Half-width of the band of ratios that count as the same speed.
    normalize : bool
        Divide out the reference backend's drift (where both reports timed it).

    Returns
    -------
    CompareResult
        ``rows``, ``counts``, ``passed`` (no SLOW, no MISSING), ``to_markdown()``.

    Examples
    --------
    >>> import attnbench
    >>> from attnbench.report import Report, compare
    >>> g = attnbench.load_grid("mission")
    >>> c = compare(Report(g, []), Report(g, []))   # normally: Report.load("old.json"), Report.load("new.json")
    >>> c.passed, c.counts["SLOW"]
    (True, 0)
    """
    rows = []
    old_by, new_by = ({e.case.key: e for e in r.entries} for r in (baseline, current))
    keys = [e.case.key for e in sorted(baseline.entries, key=lambda e: e.index)]
    keys += [e.case.key for e in sorted(current.entries, key=lambda e: e.index) if e.case.key not in old_by]
    for key in keys:
        old_e, new_e = old_by.get(key), new_by.get(key)
        old = _timed_kernel(old_e, baseline.label)
        new = _timed_kernel(new_e, current.label)
        row = CompareRow(key=key, status="",
                         old_kernel=old_e.kernel if old_e else None, new_kernel=new_e.kernel if new_e else None,
                         old_us=old.summary["median"] if old else None, new_us=new.summary["median"] if new else None)
        if old is None and new is None:
            row.status, row.note = "NEW", "timed in neither"
        elif old is None:
            row.status, row.note = "NEW", "not timed in the baseline"
        elif new is None:
            row.status = "MISSING"
            row.note = ("not in the current report" if new_e is None else
                        f"error: {new_e.error}" if new_e.error else "failed its correctness check")
        else:
            o, n = _ref_median(old_e), _ref_median(new_e)
            row.ref_ratio = n / o if o and n else None
            samples = new.samples
            if normalize and row.ref_ratio:
                samples = samples / row.ref_ratio
                row.note = (row.note + "; " if row.note else "") + f"normalized by the reference's drift x{row.ref_ratio:.3f}"
            g = regression_gate(samples, old.samples, tolerance=tolerance, seed=seed, full=True)
            row.status, row.ratio, row.low, row.high = g["status"], g["ratio"], g["low"], g["high"]
        rows.append(row)
    return CompareResult(baseline=baseline.label, current=current.label, tolerance=tolerance, rows=rows)
