"""The attnbench command: every subcommand and exit code (0 passed, 1 gate failed, 2 usage, 3 environment),
driven through main([...]) with a fake runner and a monkeypatched GPU/torch."""
import doctest
import json
import os
import subprocess
import sys

import pytest

import attnbench
from attnbench import api, cli
from attnbench.cli import main
from attnbench.report import Report
from test_report import BASE_US, SPREAD, fake_result


def runner_for(slower=1.0, speedup=1.2, correct=True, fail_S=None, unsupported=()):
    """A runner whose kernel takes BASE_US * slower, each backend speedup x that; fail_S: S that raises."""
    def run(shape, **kw):
        if shape[2] == fail_S:
            raise ValueError("no registered kernel supports this case")
        return fake_result(shape, **{**kw, "impl": "mma" if kw["impl"] == "auto" else kw["impl"],
                                     "kernel_samples": SPREAD * BASE_US * 1e-6 * slower,
                                     "speedups": {b: speedup / slower for b in kw["backends"]}, "correct": correct,
                                     "unsupported": unsupported})
    return run


@pytest.fixture
def no_gpu(monkeypatch):
    def require_gpu(device=0):
        raise RuntimeError("no CUDA device is available: test")
    monkeypatch.setattr(api, "require_gpu", require_gpu)


@pytest.fixture
def no_torch(monkeypatch):
    monkeypatch.setattr(api, "require_gpu", lambda device=0: None)

    def torch():
        raise ImportError("attnbench needs PyTorch for the SDPA references")
    monkeypatch.setattr(attnbench.sdpa, "torch", torch)


def _one_line(capsys, code_expected, argv, **kw):
    code = main(argv, **kw)
    err = capsys.readouterr().err
    assert code == code_expected, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_docstring_examples_run():
    assert doctest.testmod(cli).failed == 0


# ---- usage and environment ------------------------------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["run"], "the following arguments are required: --shape"),
    (["run", "--shape", "1,2,3"], "--shape must be B,H,S,D"),
    (["run", "--shape", "1,8,64,64", "--mode", "tepid"], "invalid choice: 'tepid'"),
    (["sweep"], "required: --grid"),
    (["sweep", "--grid", "no-such-grid"], "no-such-grid: grid: no such file, and no preset"),
    (["sweep", "--grid", "mission", "--shard", "3/2"], "shard must be K/N"),
    (["sweep", "--grid", "mission", "--impl", "bogus"], "impl: unknown kernel 'bogus'"),
    (["sweep", "--grid", "mission", "--max-seconds", "-1"], "timing.max_seconds: must lie in"),
    (["compare", "a.json"], "required: current"),
    (["compare", "a.json", "b.json", "--tolerance", "1.5"], "--tolerance must lie in [0, 1)"),
    (["compare", "missing-a.json", "missing-b.json"], "missing-a.json: no such file"),
    (["merge", "a.json", "--out", "m.txt"], "--out must name a .json file"),
    (["gate", "--grid", "mission", "--baseline", "no-baseline.json"], "no-baseline.json: no such baseline"),
])
def test_usage_errors_exit_2_with_one_line(capsys, argv, message):
    err = _one_line(capsys, 2, argv, runner=runner_for())
    assert err.startswith("attnbench: error: ") and message in err


def test_no_command_help_and_version(capsys):
    assert main([]) == 2 and "usage: attnbench" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "exit codes" in capsys.readouterr().out
    assert main(["--version"]) == 0 and attnbench.__version__ in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["run", "--shape", "1,8,64,64"], ["sweep", "--grid", "mission"],
                                  ["gate", "--grid", "mission", "--baseline", "b.json", "--save-baseline"]])
@pytest.mark.parametrize("missing", ["no_gpu", "no_torch"])
def test_environment_errors_exit_3(capsys, request, tmp_path, monkeypatch, argv, missing):
    request.getfixturevalue(missing)
    monkeypatch.chdir(tmp_path)
    err = _one_line(capsys, 3, argv)
    assert err.startswith("attnbench: environment error: ")
    assert ("no CUDA device" if missing == "no_gpu" else "PyTorch") in err


def test_gpus_without_a_gpu_is_an_environment_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(api, "device_count", lambda: 0)
    monkeypatch.setattr(api._core, "device_count", lambda: 0)
    _one_line(capsys, 3, ["sweep", "--grid", "mission", "--gpus", "all", "--out", str(tmp_path)],
              runner=runner_for())


# ---- run ----------------------------------------------------------------------------------

def test_run(capsys, tmp_path):
    calls = []

    def runner(shape, **kw):
        calls.append((shape, kw))
        return runner_for()(shape, **kw)
    out = tmp_path / "r.json"
    code = main(["run", "--shape", "4,8,512,64", "--dtype", "fp16", "--causal", "--backends", "default,flash",
                 "--impl", "auto", "--mode", "hot", "--Hkv", "2", "--json", str(out)], runner=runner)
    text = capsys.readouterr().out
    assert code == 0 and "attnbench: mma vs SDPA  B=4 H=8 S=512 D=64" in text and f"wrote {out}" in text
    shape, kw = calls[0]
    assert shape == (4, 8, 512, 64) and kw["dtype"] == "fp16" and kw["causal"] is True and kw["Hkv"] == 2
    assert kw["backends"] == ("default", "flash") and kw["mode"] == "hot" and kw["max_seconds"] == 2.0
    assert len(json.loads(out.read_text())["candidates"]["attnbench:mma"]["samples_s"]) == 41
    main(["run", "--shape", "4,8,512,64", "--json", str(out), "--no-samples"], runner=runner)
    assert "samples_s" not in json.loads(out.read_text())["candidates"]["attnbench:mma"]


def test_run_exit_codes_follow_the_gates(capsys):
    shape = ["run", "--shape", "1,8,512,64"]
    assert main(shape, runner=runner_for(correct=False)) == 1
    assert main(shape, runner=runner_for(speedup=1.0)) == 0          # slower than SDPA, but correct
    assert main(shape + ["--require-speedup"], runner=runner_for(speedup=1.0)) == 1
    assert main(shape + ["--require-speedup"], runner=runner_for(speedup=1.5)) == 0


# ---- sweep, shards, merge ---------------------------------------------------------------------

def test_sweep_writes_every_format(capsys, tmp_path):
    code = main(["sweep", "--grid", "mission", "--out", str(tmp_path), "--max-seconds", "0.5"], runner=runner_for())
    out = capsys.readouterr().out
    assert code == 0
    assert "**4 of 4 cases: 4 correct, 4 timed, 4 passed every gate, 0 errors.**" in out
    assert "| mma | sdpa:default | 4 | 1.200 |" in out and "## Cases" not in out
    for name in ("report.json", "report.csv", "report.md"):
        assert (tmp_path / name).exists() and str(tmp_path / name) in out
    r = Report.load(tmp_path / "report.json")
    assert r.grid.timing["max_seconds"] == 0.5 and r.complete


def test_sweep_fails_on_an_error_or_incorrect_case(capsys, tmp_path):
    assert main(["sweep", "--grid", "small", "--out", str(tmp_path), "--no-plots"], runner=runner_for(fail_S=128)) == 1
    assert "2 errors" in capsys.readouterr().out
    assert main(["sweep", "--grid", "small", "--out", str(tmp_path), "--no-plots"],
                runner=runner_for(correct=False)) == 1
    assert main(["sweep", "--grid", "small", "--out", str(tmp_path), "--no-plots", "--require-speedup"],
                runner=runner_for(speedup=0.9)) == 1
    assert main(["sweep", "--grid", "small", "--out", str(tmp_path), "--no-plots"], runner=runner_for(speedup=0.9)) == 0


def test_sweep_on_several_gpus(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(api, "device_count", lambda: 3)
    assert main(["sweep", "--grid", "mission", "--gpus", "all", "--out", str(tmp_path), "--no-plots"],
                runner=runner_for()) == 0
    r = Report.load(tmp_path / "report.json")
    assert [e.device for e in r.entries] == [0, 1, 2, 0]
    err = _one_line(capsys, 2, ["sweep", "--grid", "mission", "--gpus", "5", "--out", str(tmp_path)],
                    runner=runner_for())
    assert "gpus=5, but this machine has 3" in err


def test_shards_then_merge(capsys, tmp_path):
    for k in (1, 2, 3):
        assert main(["sweep", "--grid", "small", "--shard", f"{k}/3", "--out", str(tmp_path), "--no-plots"],
                    runner=runner_for()) == 0
    shards = [str(tmp_path / f"shard-{k}-of-3.json") for k in (1, 2, 3)]
    assert all(os.path.exists(p) for p in shards)
    merged = tmp_path / "all" / "merged.json"
    assert main(["merge", *shards, "--out", str(merged), "--no-plots"]) == 0
    r = Report.load(merged)
    assert r.complete and [e.index for e in r.entries] == list(range(6))
    assert (tmp_path / "all" / "merged.md").exists() and (tmp_path / "all" / "merged.csv").exists()
    err = _one_line(capsys, 2, ["merge", shards[0], shards[0], shards[1], shards[2], "--out", str(merged)])
    assert "is in both" in err and "overlap" in err
    err = _one_line(capsys, 2, ["merge", shards[0], shards[2], "--out", str(merged)])
    assert "do not cover grid 'small': 2 of its 6 cases are missing" in err
    main(["sweep", "--grid", "small", "--shard", "1/3", "--max-seconds", "1", "--out", str(tmp_path / "x"),
          "--no-plots"], runner=runner_for())
    err = _one_line(capsys, 2, ["merge", str(tmp_path / "x" / "shard-1-of-3.json"), shards[1], shards[2],
                                "--out", str(merged)])
    assert "comes from grid 'small' (fingerprint" in err


def test_torchrun_ranks(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-7")
    out = str(tmp_path)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert main(["sweep", "--grid", "mission", "--out", out, "--no-plots"], runner=runner_for()) == 0
    assert "rank 1 of 2: 2 cases written" in capsys.readouterr().out
    err = _one_line(capsys, 2, ["sweep", "--grid", "mission", "--out", out, "--gpus", "all"], runner=runner_for())
    assert "under torchrun" in err
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert main(["sweep", "--grid", "mission", "--out", out, "--no-plots"], runner=runner_for()) == 0
    r = Report.load(tmp_path / "report.json")
    assert r.complete and [e.device for e in r.entries] == [0, 1, 0, 1]
    assert [e.shard for e in r.entries] == ["1/2", "2/2", "1/2", "2/2"]
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-8")  # rank 1 of this new run never writes its piece
    err = _one_line(capsys, 3, ["sweep", "--grid", "mission", "--out", out, "--gather-timeout", "0.2"],
                    runner=runner_for())
    assert "rank(s) 1 of 2 did not finish within 0.2 s" in err


# ---- compare --------------------------------------------------------------------------------

def _report(tmp_path, name, **kw):
    d = tmp_path / name
    main(["sweep", "--grid", "mission", "--out", str(d), "--no-plots"], runner=runner_for(**kw))
    return str(d / "report.json")


@pytest.mark.parametrize("slower,status,code", [(0.9, "FAST", 0), (1.0, "SAME", 0), (1.1, "SLOW", 1)])
def test_compare_exit_codes(capsys, tmp_path, slower, status, code):
    old, new = _report(tmp_path, "old"), _report(tmp_path, "new", slower=slower)
    capsys.readouterr()
    md = tmp_path / "diff.md"
    assert main(["compare", old, new, "--tolerance", "0.02", "--out", str(md)]) == code
    out = capsys.readouterr().out
    assert out.startswith(f"# attnbench compare: {old} → {new}") and f"{status} 4" in out
    assert md.read_text() == out


def test_compare_uncertain_missing_and_no_samples(capsys, tmp_path, monkeypatch):
    old = _report(tmp_path, "old")
    d = json.load(open(old))
    for e in d["entries"]:  # three samples with a wide spread: the interval cannot decide
        e["result"]["candidates"]["attnbench:mma"]["samples_s"] = [5e-6, 10e-6, 15e-6]
    noisy = tmp_path / "noisy.json"
    noisy.write_text(json.dumps(d))
    d2 = json.loads(noisy.read_text())
    for e in d2["entries"]:
        e["result"]["candidates"]["attnbench:mma"]["samples_s"] = [5.5e-6, 10e-6, 16e-6]
    noisy2 = tmp_path / "noisy2.json"
    noisy2.write_text(json.dumps(d2))
    assert main(["compare", str(noisy), str(noisy2)]) == 0 and "UNCERTAIN 4" in capsys.readouterr().out
    broken = _report(tmp_path, "broken", fail_S=512)
    assert main(["compare", old, broken]) == 1
    assert "MISSING 4" in capsys.readouterr().out
    main(["sweep", "--grid", "mission", "--out", str(tmp_path / "ns"), "--no-plots", "--no-samples"],
         runner=runner_for())
    err = _one_line(capsys, 2, ["compare", old, str(tmp_path / "ns" / "report.json")])
    assert "keeps no raw samples" in err


# ---- gate -----------------------------------------------------------------------------------

def _gate(tmp_path, *extra, **kw):
    return main(["gate", "--grid", "mission", "--baseline", str(tmp_path / "base.json"), "--out",
                 str(tmp_path / "gate"), "--no-plots", *extra], runner=runner_for(**kw))


def test_gate_save_baseline_then_pass_then_fail(capsys, tmp_path):
    assert _gate(tmp_path, "--save-baseline") == 0
    base = Report.load(tmp_path / "base.json")
    assert base.complete and base.entries[0].result.candidates["attnbench:mma"].samples.size == 41
    assert "## 3. Baseline: PASS" in (tmp_path / "gate" / "gate_report.md").read_text()
    assert _gate(tmp_path) == 0
    text = (tmp_path / "gate" / "gate_report.md").read_text()
    assert text.startswith("# attnbench gate: PASS")
    assert "## 1. Correctness: PASS" in text and "4 of 4 cases correct" in text
    assert "## 2. Speedup gate: PASS" in text and "## 3. Regression: PASS" in text and "SAME 4" in text
    assert (tmp_path / "gate" / "report.json").exists()
    capsys.readouterr()
    assert _gate(tmp_path, slower=1.1) == 1
    text = (tmp_path / "gate" / "gate_report.md").read_text()
    assert text.startswith("# attnbench gate: FAIL") and "## 3. Regression: FAIL" in text and "SLOW 4" in text
    assert "# attnbench gate: FAIL" in capsys.readouterr().out


def test_gate_correctness_and_speedup_steps(tmp_path):
    assert _gate(tmp_path, "--save-baseline") == 0
    assert _gate(tmp_path, correct=False) == 1
    text = (tmp_path / "gate" / "gate_report.md").read_text()
    assert "## 1. Correctness: FAIL" in text and "0 of 4 cases correct" in text and "MISSING 4" in text
    assert _gate(tmp_path, speedup=1.0) == 1
    text = (tmp_path / "gate" / "gate_report.md").read_text()
    assert "## 2. Speedup gate: FAIL" in text and "0 of 4 timed cases beat" in text and "Parity" in text
    # the backends sped up 20% against the baseline: --absolute keeps that from reading as the kernel's loss
    assert _gate(tmp_path, "--no-speedup-gate", "--absolute", speedup=1.0) == 0
    assert _gate(tmp_path, "--save-baseline", fail_S=512) == 1  # a broken run is not saved as the baseline
    assert "not written" in (tmp_path / "gate" / "gate_report.md").read_text()
    assert Report.load(tmp_path / "base.json").complete
    assert _gate(tmp_path, "--save-baseline", speedup=1.0) == 0  # speed is informational while saving


def test_gate_fails_when_the_reference_cannot_run(tmp_path):
    assert _gate(tmp_path, "--save-baseline") == 0
    assert _gate(tmp_path, unsupported=("default",)) == 1
    text = (tmp_path / "gate" / "gate_report.md").read_text()
    assert "## 2. Speedup gate: FAIL" in text and "the reference cannot run this case" in text


def test_gate_rejects_a_baseline_without_samples(capsys, tmp_path):
    main(["sweep", "--grid", "mission", "--out", str(tmp_path), "--no-plots", "--no-samples"], runner=runner_for())
    os.replace(tmp_path / "report.json", tmp_path / "base.json")
    err = _one_line(capsys, 2, ["gate", "--grid", "mission", "--baseline", str(tmp_path / "base.json"),
                                "--out", str(tmp_path / "g")], runner=runner_for())
    assert "keeps no raw samples; a baseline needs them" in err


# ---- kernels and env ----------------------------------------------------------------------

def test_kernels(capsys):
    assert main(["kernels"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| kernel | dtypes |") and "| naive | float16,bfloat16,float32 | 1..256 |" in out
    assert main(["kernels", "--json"]) == 0
    assert "naive" in [k["name"] for k in json.loads(capsys.readouterr().out)]


def test_env_without_a_gpu_or_torch(capsys, monkeypatch):
    monkeypatch.setattr(api, "device_count", lambda: 0)

    def require_gpu(device=0):
        raise RuntimeError("no CUDA device is available: test")
    monkeypatch.setattr(api, "require_gpu", require_gpu)

    def torch():
        raise ImportError("no torch")
    monkeypatch.setattr(attnbench.sdpa, "torch", torch)
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert f"attnbench {attnbench.__version__}" in out and "torch: not installed" in out
    assert "GPU: none (no CUDA device is available: test)" in out and "NVIDIA driver:" in out
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["gpus"] == [] and info["torch"] is None and info["gpu_error"].startswith("no CUDA device")


def test_env_lists_gpus(capsys, monkeypatch):
    monkeypatch.setattr(api, "device_count", lambda: 1)
    monkeypatch.setattr(api, "device_info", lambda d=0: {
        "device": d, "name": "NVIDIA H200", "sm": 90, "sm_count": 132, "clock_khz": 1980000,
        "total_memory": 150 * 2**30, "l2_bytes": 60 * 2**20, "driver_version": 13000, "runtime_version": 13000})
    assert main(["env"]) == 0
    assert ("GPU 0: NVIDIA H200, sm_90, 132 SMs, 1980 MHz, 150.0 GiB, L2 60 MiB, CUDA driver 13.0, runtime 13.0"
            in capsys.readouterr().out)


def test_python_dash_m(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.run([sys.executable, "-m", "attnbench", "sweep", "--grid", "nope"], capture_output=True,
                       text=True, env=env, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.startswith("attnbench: error: nope: grid: no such file")
    assert cli.EXIT_ENV == 3
