"""sweep on one GPU, the per-GPU worker pool, shards and torchrun ranks, driven by a fake runner on a CPU."""
import doctest
import json
import os

import pytest

import attnbench
import attnbench.multi as multi
from attnbench import api
from attnbench.grid import load_grid, parse_grid
from attnbench.report import Report, merge
from test_report import fake_result

GRID = parse_grid("""
name = "five"
backends = ["default", "flash"]
[timing]
max_seconds = 0.5
seed = 3
[[matrix]]
shapes = [[1, 8, 512, 64], [2, 4, 256, 128]]
causal = [false, true]
[[case]]
shape = {B = 1, H = 8, S = 64, D = 64, Hkv = 2, Sk = 96}
impl = "naive"
""", source="five.toml")


class FakeRunner:
    """Records every call; cases whose key is in `fail` raise, 'bad' ones return a non-Result."""

    def __init__(self, fail=(), bad=()):
        self.calls, self.fail, self.bad = [], set(fail), set(bad)

    def __call__(self, shape, **kw):
        self.calls.append((shape, kw))
        key = _key(shape, kw)
        if key in self.fail:
            raise ValueError(f"no registered kernel supports {key}")
        if key in self.bad:
            return {"not": "a Result"}
        return fake_result(shape, **{**kw, "impl": "mma" if kw["impl"] == "auto" else kw["impl"]})


def _key(shape, kw):
    return next(c.key for c in GRID if c.shape == shape and c.causal == kw["causal"] and c.Sk == kw["Sk"])


def spawn_runner(shape, **kw):
    """A picklable runner for spawned workers; the case with S=256, causal dies like a crashed CUDA process."""
    if shape[2] == 256 and kw["causal"]:
        os._exit(7)
    return fake_result(shape, **{**kw, "impl": "mma"})


def test_docstring_examples_run():
    assert doctest.testmod(multi).failed == 0


def test_sweep_on_one_device_runs_every_case_in_order():
    runner = FakeRunner()
    r = attnbench.sweep(GRID, runner, progress=False, device=2)
    assert isinstance(r, Report) and r.complete and r.shard is None
    assert [e.index for e in r.entries] == list(range(5))
    shape, kw = runner.calls[4]
    assert shape == (1, 8, 64, 64) and kw["Sk"] == 96 and kw["Hkv"] == 2 and kw["impl"] == "naive"
    assert kw["device"] == 2 and kw["max_seconds"] == 0.5 and kw["seed"] == 3 and kw["mode"] == "cold"
    assert kw["backends"] == ("default", "flash") and kw["reference"] == "default" and kw["dtype"] == "bfloat16"
    env = r.entries[0].result.environment
    assert env["gpu"]["device"] == 2 and env["host"] and env["shard"] is None
    assert all(e.device == 2 for e in r.entries)


def test_a_case_that_raises_is_an_error_entry():
    keys = [c.key for c in GRID]
    r = attnbench.sweep(GRID, FakeRunner(fail={keys[1]}, bad={keys[3]}), progress=False)
    assert [e.error is None for e in r.entries] == [True, False, True, False, True]
    assert r.entries[1].error == f"ValueError: no registered kernel supports {keys[1]}"
    assert r.entries[3].error == "TypeError: the runner returned dict, not an attnbench Result"
    assert r.totals()["errors"] == 2


def test_overrides_reach_the_runner():
    runner = FakeRunner()
    r = attnbench.sweep(GRID, runner, progress=False, impl="naive", max_seconds=0.1)
    assert all(kw["impl"] == "naive" and kw["max_seconds"] == 0.1 for _, kw in runner.calls)
    assert r.grid.fingerprint != GRID.fingerprint


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_shards_run_their_cases_and_merge_back(n):
    pieces = []
    for k in range(1, n + 1):
        runner = FakeRunner()
        p = attnbench.sweep(GRID, runner, progress=False, shard=f"{k}/{n}")
        assert p.shard == (k, n) and [e.index for e in p.entries] == GRID.shard(k, n)
        assert len(runner.calls) == len(GRID.shard(k, n))
        assert all(e.shard == f"{k}/{n}" and e.result.environment["shard"] == f"{k}/{n}" for e in p.entries)
        pieces.append(p)
    m = merge(pieces)
    assert [e.index for e in m.entries] == list(range(5)) and m.complete


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys):
    attnbench.sweep(GRID, FakeRunner(), progress=None)  # pytest's stdout is not a terminal
    assert capsys.readouterr().err == ""
    pytest.importorskip("tqdm")
    attnbench.sweep(GRID, FakeRunner(), progress=True)
    err = capsys.readouterr().err
    assert "five" in err and "5/5" in err and "case" in err


def test_default_runner_checks_the_environment_first(monkeypatch):
    def no_gpu(device=0):
        raise RuntimeError("no CUDA device is available: test")
    monkeypatch.setattr(api, "require_gpu", no_gpu)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        attnbench.sweep("mission", progress=False)
    monkeypatch.setattr(api, "require_gpu", lambda device=0: None)

    def no_torch():
        raise ImportError("attnbench needs PyTorch")
    monkeypatch.setattr(attnbench.sdpa, "torch", no_torch)
    with pytest.raises(ImportError, match="PyTorch"):
        attnbench.sweep("mission", progress=False)


# ---- the pool ---------------------------------------------------------------------------

@pytest.fixture
def three_gpus(monkeypatch):
    monkeypatch.setattr(api, "device_count", lambda: 3)


@pytest.mark.parametrize("gpus,devices", [("all", [0, 1, 2]), (2, [0, 1]), ("3", [0, 1, 2]), (1, [0])])
def test_pool_spreads_cases_round_robin_and_keeps_case_order(three_gpus, gpus, devices):
    runner = FakeRunner()
    r = attnbench.sweep(GRID, runner, progress=False, gpus=gpus, workers="thread")
    assert [e.index for e in r.entries] == list(range(5))
    assert [e.device for e in r.entries] == [devices[i % len(devices)] for i in range(5)]
    assert sorted(kw["device"] for _, kw in runner.calls) == sorted(devices[i % len(devices)] for i in range(5))
    assert [e.case.key for e in r.entries] == [c.key for c in GRID]
    assert all(e.result.environment["gpu"]["device"] == e.device for e in r.entries)


def test_pool_with_a_shard(three_gpus):
    r = attnbench.sweep(GRID, FakeRunner(), progress=False, gpus="all", shard="2/2", workers="thread")
    assert [e.index for e in r.entries] == [1, 3] and [e.device for e in r.entries] == [0, 1]


def test_pool_records_case_errors(three_gpus):
    keys = [c.key for c in GRID]
    r = attnbench.sweep(GRID, FakeRunner(fail={keys[2]}), progress=False, gpus="all", workers="thread")
    assert [e.error is not None for e in r.entries] == [False, False, True, False, False]


def test_pool_reraises_a_worker_that_cannot_start(three_gpus, monkeypatch):
    def gpu1_broken(device=0):
        if device == 1:
            raise RuntimeError("no CUDA device is available: device 1 fell off the bus")
    monkeypatch.setattr(api, "require_gpu", gpu1_broken)
    monkeypatch.setattr(attnbench.sdpa, "torch", lambda: None)
    monkeypatch.setattr(attnbench.harness, "run", FakeRunner())
    with pytest.raises(RuntimeError, match="GPU 1: no CUDA device is available: device 1 fell off the bus"):
        attnbench.sweep(GRID, progress=False, gpus="all", workers="thread")


@pytest.mark.parametrize("gpus,exc,match", [(4, ValueError, "gpus=4, but this machine has 3"),
                                            (0, ValueError, "positive integer"), ("two", ValueError, "positive"),
                                            (True, ValueError, "positive")])
def test_bad_gpu_counts(three_gpus, gpus, exc, match):
    with pytest.raises(exc, match=match):
        attnbench.sweep(GRID, FakeRunner(), progress=False, gpus=gpus, workers="thread")


def test_no_gpu_for_a_pool(monkeypatch):
    monkeypatch.setattr(api, "device_count", lambda: 0)
    monkeypatch.setattr(api._core, "device_count", lambda: 0)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        attnbench.sweep(GRID, FakeRunner(), progress=False, gpus="all", workers="thread")


def test_bad_workers_and_unpicklable_runner(three_gpus):
    with pytest.raises(ValueError, match="workers"):
        attnbench.sweep(GRID, FakeRunner(), progress=False, gpus=2, workers="fibre")
    with pytest.raises(ValueError, match="picklable"):
        attnbench.sweep(GRID, lambda shape, **kw: None, progress=False, gpus=2)


def test_spawned_workers_and_a_worker_that_dies(three_gpus):
    """Real 'spawn' processes: GPU 1's worker dies at case 3 (S=256, causal), so case 3 is an error entry."""
    r = attnbench.sweep(GRID, spawn_runner, progress=False, gpus=2)
    assert [e.index for e in r.entries] == list(range(5))
    assert [e.device for e in r.entries] == [0, 1, 0, 1, 0]
    assert [e.error is None for e in r.entries] == [True, True, True, False, True]
    assert r.entries[3].error == "the worker on GPU 1 stopped (exit code 7) before measuring this case"
    assert r.entries[1].result.environment["host"]


# ---- torchrun ---------------------------------------------------------------------------

def test_torchrun_env():
    assert multi.torchrun_env({}) is None
    assert multi.torchrun_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    assert multi.torchrun_env({"RANK": "0", "WORLD_SIZE": "1"}) == (0, 1, 0)
    with pytest.raises(ValueError, match="RANK=4, WORLD_SIZE=4"):
        multi.torchrun_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ValueError, match="integers"):
        multi.torchrun_env({"RANK": "x", "WORLD_SIZE": "4"})
    assert multi.run_id({"TORCHELASTIC_RUN_ID": "abc", "TORCHELASTIC_RESTART_COUNT": "2"}) == "abc#2"


def test_ranks_write_pieces_and_rank0_merges(tmp_path):
    out = str(tmp_path)
    pieces = {}
    for rank in (2, 1, 0):  # rank 0 last: it waits for the others' markers
        piece, merged = multi.sweep_ranked(GRID, out, rank, 3, local_rank=rank % 2, runner=FakeRunner(),
                                           progress=False, timeout=5, rid="run-a#0")
        pieces[rank] = piece
        assert (merged is None) == (rank != 0)
        assert all(e.device == rank % 2 for e in piece.entries)
        assert [e.index for e in piece.entries] == GRID.shard(rank + 1, 3)
    assert [e.index for e in merged.entries] == list(range(5)) and merged.complete
    assert sorted(os.listdir(tmp_path / "pieces")) == [f"rank-0000{r}-of-00003.{x}" for r in range(3)
                                                       for x in ("done", "json")]
    marker = json.loads((tmp_path / "pieces" / "rank-00001-of-00003.done").read_text())
    assert marker == {"fingerprint": GRID.fingerprint, "run_id": "run-a#0", "rank": 1, "cases": 2}


def test_rank0_waits_a_bounded_time_and_ignores_stale_pieces(tmp_path):
    out = str(tmp_path)
    multi.sweep_ranked(GRID, out, 1, 2, 0, runner=FakeRunner(), progress=False, rid="old-run#0")
    with pytest.raises(TimeoutError, match=r"rank\(s\) 1 of 2 did not finish within 0.3 s"):
        multi.sweep_ranked(GRID, out, 0, 2, 0, runner=FakeRunner(), progress=False, timeout=0.3, rid="new-run#0")
    other = load_grid("mission")
    multi.write_piece(attnbench.sweep(other, FakeRunnerAny(), progress=False), out, 1, 2, "new-run#0")
    with pytest.raises(TimeoutError):  # a piece of another grid is not this run's either
        multi.gather_pieces(out, 2, GRID, "new-run#0", timeout=0.1, poll=0.05)


class FakeRunnerAny:
    def __call__(self, shape, **kw):
        return fake_result(shape, **{**kw, "impl": "mma"})
