"""The `attnbench` command: run one case, sweep a grid, merge and compare reports, gate CI, list kernels.

    attnbench run --shape 4,8,512,64 --dtype bf16 --causal --backends default,flash --json out.json
    attnbench sweep --grid h200 --out results/ [--gpus all | --shard 2/4]
    attnbench merge results/shard-*.json --out results/report.json
    attnbench compare old.json new.json [--tolerance 0.02]
    attnbench gate --grid canonical --baseline base.json [--save-baseline]
    attnbench kernels
    attnbench env

Exit codes: 0 everything passed; 1 a gate failed (a correctness check, an
error in a case, a slower case or a missing one); 2 usage or input error (one
line on stderr); 3 environment error (no GPU, no torch, a torchrun rank that
never finished).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys

from . import api, harness, multi, sdpa
from .grid import MODES, RUN_DEFAULTS, load_grid, parse_shard, presets
from .report import DASH, DEFAULT_TOLERANCE, Report, _md_table, _write, compare, kernel_candidate, merge

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_ENV = 0, 1, 2, 3
NVIDIA_DRIVER_FILE = "/proc/driver/nvidia/version"


class UsageError(Exception):
    """Bad arguments or input files: exit code 2."""


class EnvironmentProblem(Exception):
    """No GPU, no torch, a rank that never finished: exit code 3."""


@contextlib.contextmanager
def _environment():
    """What the machine lacks (RuntimeError from require_gpu, ImportError from sdpa.torch, a
    TimeoutError waiting for ranks) becomes an EnvironmentProblem inside this block."""
    try:
        yield
    except (RuntimeError, ImportError, TimeoutError) as e:
        raise EnvironmentProblem(str(e)) from e


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _arg(fn):
    """An argparse type from a function raising ValueError, keeping its message."""
    def parse(text):
        try:
            return fn(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = fn.__name__
    return parse


def _shape(text):
    parts = text.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--shape must be B,H,S,D (four positive integers), got {text!r}")
    return tuple(int(p) for p in parts)


def _list(text):
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _tolerance(text):
    v = float(text)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"--tolerance must lie in [0, 1), got {text}")
    return v


def _add_timing(p, grid=True):
    """--mode and --max-seconds: run()'s defaults for `run`, overrides of the grid's for the others."""
    p.add_argument("--mode", choices=MODES, default=None if grid else RUN_DEFAULTS["mode"],
                   help="timing mode" + (" (overrides the grid's)" if grid else " (default %(default)s)"))
    p.add_argument("--max-seconds", type=float, default=None if grid else RUN_DEFAULTS["max_seconds"],
                   help="sampling time per case" + (" (overrides the grid's)" if grid else " (default %(default)s)"))


def build_parser():
    p = _Parser(prog="attnbench", description="Time attention kernels against PyTorch SDPA; sweep grids; gate CI.",
                epilog="exit codes: 0 passed, 1 a gate failed, 2 usage/input error, 3 environment error")
    from . import __version__
    p.add_argument("--version", action="version", version=f"attnbench {__version__}")
    sub = p.add_subparsers(dest="command", metavar="command")

    r = sub.add_parser("run", help="check one case, then time it against SDPA")
    r.add_argument("--shape", type=_arg(_shape), required=True, help="B,H,S,D")
    r.add_argument("--Sk", type=int, default=None, help="key/value length (default S)")
    r.add_argument("--Hkv", type=int, default=None, help="key/value heads (default H)")
    r.add_argument("--dtype", default="bf16", help="bf16 or fp16")
    r.add_argument("--causal", action="store_true", help="SDPA's top-left aligned causal mask")
    r.add_argument("--impl", default="auto", help="a kernel of 'attnbench kernels', or auto")
    r.add_argument("--config", default=None, help="the kernel's tunable config")
    r.add_argument("--backends", type=_list, default=tuple(RUN_DEFAULTS["backends"]),
                   help=f"comma-separated, from {','.join(sdpa.BACKENDS)}")
    r.add_argument("--reference", default=RUN_DEFAULTS["reference"], help="the backend the speedup gate uses")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", type=int, default=0)
    _add_timing(r, grid=False)
    r.add_argument("--json", metavar="PATH", help="write the Result as JSON")
    r.add_argument("--no-samples", action="store_true", help="leave the raw samples out of --json")
    r.add_argument("--require-speedup", action="store_true", help="exit 1 also when the speedup gate fails")
    r.set_defaults(handler=cmd_run)

    s = sub.add_parser("sweep", help="run every case of a grid (a TOML file or a preset)")
    s.add_argument("--grid", required=True, help=f"a TOML file or a preset: {', '.join(presets())}")
    s.add_argument("--out", default="attnbench-out", help="folder for the report files (default %(default)s)")
    s.add_argument("--gpus", default=None, help="'all' or N: one worker process per GPU")
    s.add_argument("--shard", type=_arg(parse_shard), default=None, help="K/N: run only shard K of N (1-based)")
    s.add_argument("--device", type=int, default=0, help="the GPU without --gpus")
    s.add_argument("--impl", default=None, help="run every case with this kernel instead of the grid's")
    _add_timing(s)
    s.add_argument("--no-samples", action="store_true", help="leave raw samples out (compare needs them)")
    s.add_argument("--no-plots", action="store_true")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stdout is a terminal)")
    s.add_argument("--require-speedup", action="store_true", help="exit 1 also when a speedup gate fails")
    s.add_argument("--gather-timeout", type=float, default=multi.GATHER_TIMEOUT_S,
                   help="under torchrun: how long rank 0 waits for the others (s)")
    s.set_defaults(handler=cmd_sweep)

    m = sub.add_parser("merge", help="join reports of pieces of one grid (shards, GPUs, machines)")
    m.add_argument("reports", nargs="+", help="report JSON files")
    m.add_argument("--out", required=True, help="the merged report, M.json (M.md, M.csv, plots beside it)")
    m.add_argument("--no-plots", action="store_true")
    m.set_defaults(handler=cmd_merge)

    c = sub.add_parser("compare", help="FAST / SAME / SLOW / UNCERTAIN per case, from raw samples")
    c.add_argument("baseline", help="the old report JSON")
    c.add_argument("current", help="the new report JSON")
    c.add_argument("--tolerance", type=_arg(_tolerance), default=DEFAULT_TOLERANCE,
                   help="half-width of the band of ratios that count as the same speed (default %(default)s)")
    c.add_argument("--absolute", action="store_true",
                   help="compare raw times; by default the reference backend's drift between the reports is "
                        "divided out")
    c.add_argument("--out", default=None, help="also write the table to this Markdown file")
    c.set_defaults(handler=cmd_compare)

    g = sub.add_parser("gate", help="the CI gate: correctness, speedup gate, regression against a baseline")
    g.add_argument("--grid", required=True, help=f"a TOML file or a preset: {', '.join(presets())}")
    g.add_argument("--baseline", required=True, help="the baseline report JSON")
    g.add_argument("--save-baseline", action="store_true",
                   help="write this run as the baseline instead of comparing (passes unless a case is incorrect)")
    g.add_argument("--tolerance", type=_arg(_tolerance), default=DEFAULT_TOLERANCE)
    g.add_argument("--absolute", action="store_true",
                   help="compare raw times, without dividing out the reference backend's drift")
    g.add_argument("--out", default="attnbench-gate", help="folder for gate_report.md and the report (default "
                                                             "%(default)s)")
    g.add_argument("--gpus", default=None, help="'all' or N: one worker process per GPU")
    g.add_argument("--device", type=int, default=0)
    g.add_argument("--impl", default=None, help="run every case with this kernel instead of the grid's")
    _add_timing(g)
    g.add_argument("--no-speedup-gate", action="store_true", help="skip step 2 (the kernel need not beat SDPA)")
    g.add_argument("--no-plots", action="store_true")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    g.set_defaults(handler=cmd_gate)

    k = sub.add_parser("kernels", help="the registered kernels")
    k.add_argument("--json", action="store_true")
    k.set_defaults(handler=cmd_kernels)

    e = sub.add_parser("env", help="GPU, driver, CUDA, torch and cuDNN versions (works without a GPU)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(handler=cmd_env)
    return p


def main(argv=None, *, runner=None):
    """The `attnbench` command; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default sys.argv[1:]).
    runner : callable, optional
        Stands in for attnbench.run (tests, embedding); with it, no GPU check
        is made and --gpus workers are threads of this process.

    Examples
    --------
    >>> from attnbench.cli import main
    >>> main(["sweep", "--grid", "no-such-grid"])   # one line on stderr: no such file, and no preset
    2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return args.handler(args, runner)
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else EXIT_OK
    except EnvironmentProblem as e:
        _say(f"environment error: {e}")
        return EXIT_ENV
    except (UsageError, ValueError, OSError) as e:
        _say(f"error: {e}")
        return EXIT_USAGE


def _say(message):
    print(f"attnbench: {message}", file=sys.stderr)


# ---- run ---------------------------------------------------------------------------------

def cmd_run(a, runner):
    if runner is None:
        with _environment():
            multi.check_environment(a.device)
        runner = harness.run
    r = runner(a.shape, impl=a.impl, dtype=a.dtype, causal=a.causal, backends=a.backends, mode=a.mode, seed=a.seed,
               Sk=a.Sk, Hkv=a.Hkv, config=a.config, reference=a.reference, device=a.device,
               max_seconds=a.max_seconds)
    print(r)
    if a.json:
        _write(a.json, r.to_json(samples=not a.no_samples))
        print(f"wrote {a.json}")
    failed = not r.correctness.get("passed") or (a.require_speedup and r.gates.get("speedup") is False)
    return EXIT_FAIL if failed else EXIT_OK


# ---- sweep and merge ---------------------------------------------------------------------

def _grid(a):
    return load_grid(a.grid).with_overrides(impl=a.impl, mode=a.mode, max_seconds=a.max_seconds)


def report_status(report, require_speedup=False):
    """EXIT_FAIL when a case errored or failed its correctness check (or, if asked, its speedup gate)."""
    t = report.totals()
    bad = t["errors"] > 0 or t["correct"] < t["cases"]
    if require_speedup:
        bad = bad or any(e.result is not None and e.result.gates.get("speedup") is False for e in report.entries)
    return EXIT_FAIL if bad else EXIT_OK


def _save(report, directory, stem, a, samples=True):
    saved = report.save(directory, stem=stem, samples=samples, plots=not a.no_plots)
    if saved["note"]:
        _say(saved["note"])
    return saved["files"]


def _print_brief(report, files):
    print(report.to_markdown(cases=False), end="")
    print(f"\nwrote {', '.join(files)}")


def cmd_sweep(a, runner):
    grid = _grid(a)
    workers = "thread" if runner is not None else "process"
    ranks = multi.torchrun_env()
    if ranks is not None:
        if a.gpus is not None or a.shard is not None:
            raise UsageError("under torchrun each rank takes its own shard on GPU LOCAL_RANK: drop --gpus and --shard")
        rank, world, local = ranks
        progress = a.progress if a.progress is not None else (rank == 0 and sys.stdout.isatty())  # one bar, not N
        with _environment():
            piece, merged = multi.sweep_ranked(grid, a.out, rank, world, local, runner=runner, progress=progress,
                                               timeout=a.gather_timeout, rid=multi.run_id())
        if merged is None:
            print(f"rank {rank} of {world}: {len(piece.entries)} cases written to "
                  f"{multi.piece_paths(a.out, rank, world)[0]}; rank 0 merges")
            return report_status(piece, a.require_speedup)
        _print_brief(merged, _save(merged, a.out, "report", a, samples=not a.no_samples))
        return report_status(merged, a.require_speedup)
    with _environment():
        report = multi.sweep(grid, runner, a.progress, gpus=a.gpus, device=a.device, shard=a.shard, workers=workers)
    stem = "report" if a.shard is None else f"shard-{a.shard[0]}-of-{a.shard[1]}"
    _print_brief(report, _save(report, a.out, stem, a, samples=not a.no_samples))
    return report_status(report, a.require_speedup)


def cmd_merge(a, runner):
    if not a.out.endswith(".json"):
        raise UsageError(f"--out must name a .json file, got {a.out!r}")
    merged = merge([Report.load(p) for p in a.reports])
    directory = os.path.dirname(a.out) or "."
    _print_brief(merged, _save(merged, directory, os.path.basename(a.out)[:-5], a))
    return EXIT_OK


# ---- compare and gate ----------------------------------------------------------------------

def cmd_compare(a, runner):
    result = compare(Report.load(a.baseline), Report.load(a.current), tolerance=a.tolerance,
                     normalize=not a.absolute)
    md = result.to_markdown()
    print(md, end="")
    if a.out:
        _write(a.out, md)
    return EXIT_OK if result.passed else EXIT_FAIL


def _check_baseline_samples(baseline):
    for e in baseline.entries:
        kc = kernel_candidate(e.result) if e.result is not None else None
        if kc is not None and kc.samples.size == 0:
            raise UsageError(f"{baseline.label}: case {e.case.key!r} keeps no raw samples; a baseline needs them "
                             "(write it with 'attnbench gate --save-baseline' or a sweep without --no-samples)")


def cmd_gate(a, runner):
    grid = _grid(a)
    baseline = None
    if not a.save_baseline:
        if not os.path.exists(a.baseline):
            raise UsageError(f"{a.baseline}: no such baseline; create it with --save-baseline")
        baseline = Report.load(a.baseline)
        _check_baseline_samples(baseline)
    workers = "thread" if runner is not None else "process"
    with _environment():
        report = multi.sweep(grid, runner, a.progress, gpus=a.gpus, device=a.device, workers=workers)
    files = _save(report, a.out, "report", a)
    steps = [_gate_correctness(report)]
    steps.append(_gate_speedup(report, informational=a.save_baseline, skipped=a.no_speedup_gate))
    if a.save_baseline:
        if steps[0][1]:
            os.makedirs(os.path.dirname(a.baseline) or ".", exist_ok=True)
            _write(a.baseline, report.to_json(samples=True))
            steps.append(("3. Baseline", True, [f"this run was written to `{a.baseline}` as the new baseline."]))
        else:
            steps.append(("3. Baseline", False, ["not written: a case failed its correctness check or errored."]))
    else:
        steps.append(_gate_regression(baseline, report, a.tolerance, not a.absolute))
    passed = all(ok for _, ok, _ in steps)
    lines = [f"# attnbench gate: {'PASS' if passed else 'FAIL'}", "",
             f"grid `{grid.name}` ({len(grid)} cases), fingerprint `{grid.fingerprint}`; "
             f"baseline `{a.baseline}`{' (saved by this run)' if a.save_baseline else ''}; "
             f"tolerance ±{100 * a.tolerance:g}%; full report: `report.md`", ""]
    for title, ok, body in steps:
        lines += [f"## {title}: {'PASS' if ok else 'FAIL'}", "", *body, ""]
    md = "\n".join(lines)
    path = os.path.join(a.out, "gate_report.md")
    _write(path, md)
    print(md, end="")
    print(f"wrote {path}, {', '.join(files)}")
    return EXIT_OK if passed else EXIT_FAIL


def _gate_correctness(report):
    bad = [(f"#{e.index} {e.case.key}", e.error or "; ".join(e.result.correctness.get("notes", [])) or "incorrect")
           for e in report.entries if e.error is not None or not e.correct]
    body = [f"{len(report.entries) - len(bad)} of {len(report.entries)} cases correct."]
    body += [f"- {label}: {why}" for label, why in bad]
    return "1. Correctness", not bad, body


def _gate_speedup(report, informational, skipped):
    title = "2. Speedup gate"
    if skipped:
        return title, True, ["skipped (--no-speedup-gate)."]
    rows, gated = [], 0
    for e in report.entries:
        g = e.result.gates if e.result is not None else {}
        if g.get("speedup") is None:
            continue
        gated += 1
        if not g["speedup"]:
            c = e.result.comparisons.get(g["reference"])
            rows.append([f"#{e.index} {e.case.key}", e.result.impl, f"sdpa:{g['reference']}",
                         f"{c.speedup:.3f} [{c.speedup_low:.3f}, {c.speedup_high:.3f}]" if c else "—",
                         c.verdict if c else "the reference cannot run this case"])
    body = [f"{gated - len(rows)} of {gated} timed cases beat their reference backend "
            "(median below the threshold times the reference's, CI upper bound below 1)."]
    if rows:
        body += ["", _md_table(["case", "kernel", "vs", "speedup [CI]", "verdict"], rows)]
    if informational:
        body += ["", "(informational while saving a baseline)"]
        return title, True, body
    return title, not rows, body


def _gate_regression(baseline, report, tolerance, normalize):
    result = compare(baseline, report, tolerance=tolerance, normalize=normalize)
    c = result.counts
    body = [", ".join(f"{k} {v}" for k, v in c.items()) + f" (against `{baseline.label}`; SLOW and MISSING fail).",
            ""]
    table = result.to_markdown().split("\n")
    body += [ln for ln in table if ln.startswith("|")]
    return "3. Regression", result.passed, body


# ---- kernels and env -----------------------------------------------------------------------

def cmd_kernels(a, runner):
    ks = api.kernels()
    if a.json:
        print(json.dumps(ks, indent=1))
        return EXIT_OK
    rows = []
    for k in ks:
        auto = api.AUTO_ORDER.index(k["name"]) + 1 if k["name"] in api.AUTO_ORDER else DASH
        dims = ",".join(map(str, k["head_dims"])) or f"1..{k['max_head_dim']}"
        rows.append([k["name"], ",".join(k["dtypes"]), dims, _yes(k["causal"]), _yes(k["gqa"]), _yes(k["lse"]),
                     k["archs"], ",".join(k["configs"]), auto, k["description"]])
    print(_md_table(["kernel", "dtypes", "head dims", "causal", "GQA", "lse", "GPUs", "configs", "auto order",
                     "what it is"], rows))
    return EXIT_OK


def _yes(flag):
    return "yes" if flag else "no"


def _cuda_version(v):
    return f"{v // 1000}.{(v % 1000) // 10}" if isinstance(v, int) and v > 0 else str(v)


def _nvidia_driver():
    try:
        with open(NVIDIA_DRIVER_FILE, encoding="utf-8") as f:
            first = f.readline()
    except OSError:
        return None
    words = [w for w in first.split() if w[:1].isdigit() and "." in w]
    return words[0] if words else first.strip()


def environment_info():
    """What `attnbench env` prints, as a dict (no GPU or torch needed)."""
    from . import __version__
    info = {"attnbench": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "nvidia_driver": _nvidia_driver(), "torch": None, "torch_cuda": None, "cudnn": None, "gpus": [],
            "gpu_error": None}
    import numpy
    info["numpy"] = numpy.__version__
    try:
        info.update(sdpa.versions())
    except ImportError:
        info["torch"] = None
    n = api.device_count()
    if n == 0:
        try:
            api.require_gpu(0)
        except RuntimeError as e:
            info["gpu_error"] = str(e)
    for d in range(n):
        info["gpus"].append(api.device_info(d))
    return info


def cmd_env(a, runner):
    info = environment_info()
    if a.json:
        print(json.dumps(info, indent=1))
        return EXIT_OK
    torch = (f"torch {info['torch']} (CUDA {info['torch_cuda']}, cuDNN {info['cudnn']})" if info["torch"]
             else "torch: not installed (pip install 'attnbench[torch]')")
    lines = [f"attnbench {info['attnbench']}; python {info['python']}, numpy {info['numpy']}; {info['platform']}",
             torch, f"NVIDIA driver: {info['nvidia_driver'] or 'not found (' + NVIDIA_DRIVER_FILE + ')'}"]
    if not info["gpus"]:
        lines.append(f"GPU: none ({info['gpu_error']})")
    for g in info["gpus"]:
        lines.append(f"GPU {g['device']}: {g['name']}, sm_{g['sm']}, {g['sm_count']} SMs, "
                     f"{g['clock_khz'] / 1000:.0f} MHz, {g['total_memory'] / 2**30:.1f} GiB, "
                     f"L2 {g['l2_bytes'] / 2**20:.0f} MiB, CUDA driver {_cuda_version(g['driver_version'])}, "
                     f"runtime {_cuda_version(g['runtime_version'])}")
    print("\n".join(lines))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
