"""Result: what attnbench.run measured, as data, JSON, a text table and HTML."""
from __future__ import annotations

import html
import json
from dataclasses import dataclass, field

import numpy as np

SCHEMA_VERSION = 1


@dataclass
class Candidate:
    """One timed thing: the kernel under test or an SDPA backend."""
    name: str
    kind: str                      # "kernel" or "backend"
    samples: np.ndarray            # seconds per call, in the order taken
    summary: dict                  # attnbench.summarize of the samples in microseconds
    tflops: float                  # at the median
    bandwidth_gbs: float           # q, k, v read once and o written once, at the median
    noise: float                   # relative noise of the median when the timer stopped

    def to_dict(self, samples=True):
        d = {"name": self.name, "kind": self.kind, "summary_us": _plain(self.summary), "tflops": self.tflops,
             "bandwidth_gbs": self.bandwidth_gbs, "noise": self.noise}
        if samples:
            d["samples_s"] = [float(x) for x in self.samples]
        return d


@dataclass
class Comparison:
    """The candidate against one backend: median ratio with its bootstrap CI."""
    baseline: str
    ratio: float                   # median(candidate) / median(baseline)
    ratio_low: float
    ratio_high: float
    speedup: float                 # 1 / ratio
    speedup_low: float
    speedup_high: float
    gate: dict
    verdict: str

    def to_dict(self):
        return _plain(self.__dict__)


@dataclass
class Result:
    """The outcome of attnbench.run for one case."""
    shape: dict
    dtype: str
    causal: bool
    scale: float
    impl: str
    config: str | None
    seed: int
    flops: float
    bytes: int
    candidates: dict = field(default_factory=dict)
    comparisons: dict = field(default_factory=dict)
    correctness: dict = field(default_factory=dict)
    gates: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    backends: list = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.gates.get("passed"))

    def to_dict(self, samples=True):
        """Plain-Python form (JSON-ready); samples=False leaves out the raw times."""
        return {
            "schema": SCHEMA_VERSION,
            "shape": self.shape, "dtype": self.dtype, "causal": self.causal, "scale": self.scale,
            "impl": self.impl, "config": self.config, "seed": self.seed, "flops": self.flops, "bytes": self.bytes,
            "candidates": {k: c.to_dict(samples) for k, c in self.candidates.items()},
            "comparisons": {k: c.to_dict() for k, c in self.comparisons.items()},
            "correctness": _plain(self.correctness), "gates": _plain(self.gates),
            "timing": _plain({k: v for k, v in self.timing.items() if samples or k != "sm_mhz"}),
            "environment": _plain(self.environment), "backends": list(self.backends),
            "wall_seconds": self.wall_seconds,
        }

    def to_json(self, samples=True, indent=2):
        return json.dumps(self.to_dict(samples), indent=indent)

    def _title(self):
        s = self.shape
        kv = "" if (s["Hkv"] == s["Hq"] and s["Sk"] == s["Sq"]) else f" Hkv={s['Hkv']} Sk={s['Sk']}"
        return (f"attnbench: {self.impl} vs SDPA  B={s['B']} H={s['Hq']} S={s['Sq']} D={s['D']}{kv} "
                f"{self.dtype}{' causal' if self.causal else ''}  [{self.timing.get('mode')}]")

    def rows(self):
        """(name, median us, p90, p99, IQR, TFLOP/s, speedup [CI], verdict) per timed candidate."""
        out = []
        for key, c in self.candidates.items():
            s = c.summary
            comp = self.comparisons.get(key.split(":", 1)[1]) if c.kind == "backend" else None
            sp = (f"{comp.speedup:.3f} [{comp.speedup_low:.3f}, {comp.speedup_high:.3f}]" if comp else "")
            out.append((key, s["median"], s["p90"], s["p99"], s["iqr"], c.tflops, sp, comp.verdict if comp else ""))
        return out

    def __str__(self):
        lines = [self._title()]
        corr = self.correctness
        lines.append(f"correctness: {'PASS' if corr.get('passed') else 'FAIL'}  max|err| "
                     f"{corr.get('max_abs_error', float('nan')):.3g} <= tol {corr.get('tolerance', float('nan')):.3g}"
                     f"  (truth: {corr.get('truth')})")
        for note in corr.get("notes", []):
            lines.append(f"  ! {note}")
        for b, why in corr.get("unsupported", {}).items():
            lines.append(f"  sdpa:{b} unsupported: {why[:120]}")
        if self.candidates:
            ci = f"{100 * self.gates.get('confidence', 0.95):g}% CI"
            hdr = (f"{'candidate':<22}{'median us':>11}{'p90':>10}{'p99':>10}{'IQR':>9}{'TFLOP/s':>9}  "
                   f"speedup vs it [{ci}]  verdict")
            lines += [hdr, "-" * len(hdr)]
            for name, med, p90, p99, iqr, tf, sp, v in self.rows():
                lines.append(f"{name:<22}{med:>11.2f}{p90:>10.2f}{p99:>10.2f}{iqr:>9.2f}{tf:>9.1f}  {sp:<22}  {v}")
        t = self.timing
        lines.append(f"timing: {t.get('stop_reason')}" + ("  THROTTLED" if t.get("throttled") else ""))
        g = self.gates
        if g.get("speedup") is not None:
            lines.append(f"gate vs sdpa:{g['reference']}: {'PASS' if g['speedup'] else 'FAIL'} "
                         f"(median below {g.get('threshold', 0.95):g}x with CI upper bound below 1)")
        gpu = self.environment.get("gpu", {})
        lines.append(f"env: {gpu.get('name')} ({gpu.get('sm_count')} SMs), torch {self.environment.get('torch')}, "
                     f"cuDNN {self.environment.get('cudnn')}; wall {self.wall_seconds:.2f} s")
        return "\n".join(lines)

    def __repr__(self):
        return f"<Result {self._title()} passed={self.passed}>"

    def _repr_html_(self):
        head = "".join(f"<th>{h}</th>" for h in ("candidate", "median µs", "p90", "p99", "IQR", "TFLOP/s",
                                                 "speedup vs it [95% CI]", "verdict"))
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(x if not isinstance(x, float) else f'{x:.2f}'))}</td>"
                             for x in row) + "</tr>" for row in self.rows())
        corr = "PASS" if self.correctness.get("passed") else "FAIL"
        return (f"<div><b>{html.escape(self._title())}</b><br>correctness: {corr}, "
                f"max|err| {self.correctness.get('max_abs_error', float('nan')):.3g}"
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                f"<small>{html.escape(str(self.timing.get('stop_reason')))}</small></div>")


def _plain(x):
    """NumPy scalars and arrays to plain Python, recursively (for JSON)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_plain(v) for v in x.tolist()]
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None  # JSON has no NaN or Infinity
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x
