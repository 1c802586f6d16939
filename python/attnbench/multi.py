"""Running a grid: on one GPU, on every GPU of a machine, as shards across machines, as torchrun ranks.

* `sweep(grid)` runs every case on one GPU, in this process.
* `sweep(grid, gpus="all")` starts one worker process per GPU (the 'spawn'
  start method: CUDA cannot be forked); GPU j of n measures cases j, j+n,
  j+2n, ... of the grid, each worker sends back one Result dict per case, and
  the parent puts them in case order.  A case that raises becomes an error
  entry; a worker that cannot start (no GPU, no torch) raises in the parent;
  a worker that dies leaves its unmeasured cases as error entries.
* `sweep(grid, shard=(k, n))` runs shard k of n (grid.Grid.shard); `merge`
  (attnbench.report) joins the pieces, e.g. of a Slurm job array.
* Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK set) `sweep_ranked` makes each
  rank take its shard on GPU LOCAL_RANK and write it as a file in the output
  folder with a completion marker; rank 0 waits for every marker (a bounded
  wait) and merges.  No torch.distributed is needed.

The worker pool takes ``workers="thread"`` so that its slicing, ordering and
error handling can be tested on a CPU with a fake runner.
"""
from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import pickle
import socket
import sys
import threading
import time

from . import api, harness, sdpa
from .grid import Case, load_grid, parse_shard
from .report import Entry, Report, _write, merge
from .result import Result

#: Rank 0 looks for the other ranks' completion markers this often ...
GATHER_POLL_S = 1.0
#: ... for at most this long after finishing its own shard (ranks get equal shares, so an hour
#: past rank 0's end means a rank died or hangs, not that it is slow).
GATHER_TIMEOUT_S = 3600.0
PIECES_DIR = "pieces"
#: Exceptions a worker may raise whose type the parent re-raises; any other becomes RuntimeError.
_REBUILT = {"RuntimeError": RuntimeError, "ImportError": ImportError, "ModuleNotFoundError": ImportError,
            "ValueError": ValueError, "TypeError": TypeError}


def check_environment(device=0):
    """Raise what attnbench.run would raise before measuring anything.

    RuntimeError when there is no CUDA device (or not `device`), ImportError
    when torch is missing: the CLI's exit code 3.

    Examples
    --------
    >>> from attnbench.multi import check_environment
    >>> check_environment(0)   # doctest: +SKIP
    """
    api.require_gpu(device)
    sdpa.torch()


def _measure(index, case, runner, timing, device, shard_label):
    """Run one case; an exception becomes an error entry, not a crash."""
    try:
        result = runner(case.shape, **case.run_kwargs(), **timing, device=device)
        if not isinstance(result, Result):
            raise TypeError(f"the runner returned {type(result).__name__}, not an attnbench Result")
    except Exception as e:  # noqa: BLE001 -- every failure of one case is recorded, the sweep goes on
        return Entry(index, case, error=f"{type(e).__name__}: {e}", device=device, shard=shard_label)
    env = dict(result.environment)
    gpu = dict(env.get("gpu") or {})
    gpu.setdefault("device", device)
    env.update(gpu=gpu, host=socket.gethostname(), shard=shard_label)
    result.environment = env
    return Entry(index, case, result=result, device=device, shard=shard_label)


class _Progress:
    """A tqdm bar with ETA on a terminal; nothing when stdout is not one (or tqdm is missing)."""

    def __init__(self, total, enabled, desc):
        self.bar = None
        if enabled is None:
            enabled = sys.stdout.isatty()
        if enabled and total:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, desc=desc, unit="case", dynamic_ncols=True)

    def update(self, entry):
        if self.bar is not None:
            self.bar.set_postfix_str(entry.case.key + (" ERROR" if entry.error else ""), refresh=False)
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def devices_for(gpus, device=0):
    """The device indices a sweep uses: [device] for gpus=None, else the first N (or "all") GPUs.

    Raises RuntimeError when there is no GPU, ValueError when more are asked for than exist.

    Examples
    --------
    >>> from attnbench.multi import devices_for
    >>> devices_for(None, device=3)
    [3]
    """
    if gpus is None:
        return [device]
    n = api.device_count()
    if isinstance(gpus, str) and gpus != "all":
        if not gpus.isdigit():
            raise ValueError(f"gpus must be 'all' or a positive integer, got {gpus!r}")
        gpus = int(gpus)
    if gpus != "all" and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1):
        raise ValueError(f"gpus must be 'all' or a positive integer, got {gpus!r}")
    if n == 0:
        api.require_gpu(0)  # raises the no-device RuntimeError, worded as everywhere else
        raise RuntimeError("no CUDA device is visible to this process")
    if gpus == "all":
        return list(range(n))
    if gpus > n:
        raise ValueError(f"gpus={gpus}, but this machine has {n} CUDA device(s) visible")
    return list(range(gpus))


def sweep(grid, runner=None, progress=None, *, gpus=None, device=0, shard=None, workers="process", impl=None,
          **timing):
    """Run every case of a grid (or of one shard of it) and collect a Report.

    Parameters
    ----------
    grid : Grid, str or path
        A Grid, a preset name or a TOML file (attnbench.load_grid).
    runner : callable, optional
        ``runner(shape, impl=, dtype=, causal=, backends=, Sk=, Hkv=,
        reference=, config=, <timing options>, device=) -> Result``; default
        attnbench.run (then a missing GPU or torch raises before any case).
        With ``gpus`` and ``workers="process"`` it must be picklable (a
        module-level function).
    progress : bool, optional
        A progress bar with ETA; default: on when stdout is a terminal.
    gpus : None, int or "all"
        None: one GPU (`device`), in this process. N or "all": one worker per
        GPU, each taking every N-th case.
    device : int
        The GPU when ``gpus`` is None.
    shard : (k, n) or "k/n", optional
        Run only shard k of n (1-based) of the grid.
    workers : {"process", "thread"}
        How the per-GPU workers run: spawned processes, or threads of this
        process (for tests with a fake runner).
    impl, **timing
        Overrides of every case's kernel and of the grid's timing options
        (mode, max_seconds, min_samples, target_noise, blocking, seed,
        threshold, confidence).

    Returns
    -------
    Report

    Examples
    --------
    >>> import attnbench
    >>> report = attnbench.sweep("small", max_seconds=0.25)   # doctest: +SKIP
    >>> print(report.to_markdown())                          # doctest: +SKIP
    """
    grid = load_grid(grid)
    if impl is not None or timing:
        grid = grid.with_overrides(impl=impl, **timing)
    shard = None if shard is None else parse_shard(shard)
    shard_label = None if shard is None else f"{shard[0]}/{shard[1]}"
    indices = grid.shard(*shard) if shard else list(range(len(grid)))
    devices = devices_for(gpus, device)
    if workers not in ("process", "thread"):
        raise ValueError(f"workers must be 'process' or 'thread', got {workers!r}")
    if len(devices) == 1 and runner is None:
        check_environment(devices[0])
    bar = _Progress(len(indices), progress, f"{grid.name}" + (f" [{shard_label}]" if shard_label else ""))
    try:
        if len(devices) == 1:
            run = runner or harness.run
            entries = []
            for i in indices:
                entries.append(_measure(i, grid.cases[i], run, grid.timing, devices[0], shard_label))
                bar.update(entries[-1])
        else:
            entries = run_pool(grid, indices, devices, runner, shard_label, workers, bar.update)
    finally:
        bar.close()
    return Report(grid=grid, entries=entries, shard=shard)


# ---- the worker pool -------------------------------------------------------------------------

def _worker(device, jobs, runner, timing, shard_label, conn):
    """One GPU's worker: measure `jobs` [(index, case dict)] on `device`, sending each case down `conn`.

    Messages: ("case", entry dict) per case, ("fatal", exception type, message) if it cannot go on;
    the connection closes when the worker ends, which is how the parent knows.
    """
    try:
        if runner is None:
            check_environment(device)
            runner = harness.run
        for index, case in jobs:
            conn.send(("case", _measure(index, Case.from_dict(case), runner, timing, device, shard_label).to_dict()))
    except Exception as e:  # noqa: BLE001 -- travels to the parent, which re-raises it
        conn.send(("fatal", type(e).__name__, str(e)))
    finally:
        conn.close()


class _ThreadWorker(threading.Thread):
    exitcode = None


def run_pool(grid, indices, devices, runner, shard_label, workers, on_entry=None):
    """Measure grid.cases[i] for i in `indices`, GPU devices[j] taking indices[j::len(devices)].

    Each worker has its own pipe; a pipe's send is written through at once,
    so what a worker measured before it died still arrives, and its end of
    the pipe closing tells that it ended.  Returns the entries in the order
    of `indices`.  A worker's failure to start is re-raised here (after the
    others finish), its type kept for RuntimeError/ImportError/ValueError/
    TypeError; the cases a worker never reported (it died) are error entries.
    """
    jobs = {d: [(i, grid.cases[i].to_dict()) for i in indices[j::len(devices)]] for j, d in enumerate(devices)}
    if workers == "process":
        if runner is not None:
            try:
                pickle.dumps(runner)
            except Exception as e:  # noqa: BLE001 -- any pickling failure means the same thing
                raise ValueError(f"a runner for worker processes must be picklable (a module-level function); "
                                 f"use workers='thread' for this one ({e})") from None
        ctx = multiprocessing.get_context("spawn")
        make = ctx.Process
    else:
        ctx, make = multiprocessing, _ThreadWorker
    procs, conns = {}, {}
    for d in devices:
        recv, send = ctx.Pipe(duplex=False)
        procs[d] = make(target=_worker, args=(d, jobs[d], runner, grid.timing, shard_label, send),
                        name=f"attnbench-gpu{d}", daemon=True)
        procs[d].start()
        if workers == "process":
            send.close()  # the child holds its own copy; ours must go for its exit to show as EOF
        conns[recv] = d
    got, fatal = {}, []
    while conns:
        for conn in multiprocessing.connection.wait(list(conns)):
            d = conns[conn]
            try:
                msg = conn.recv()
            except EOFError:
                conn.close()
                del conns[conn]
                continue
            if msg[0] == "case":
                entry = Entry.from_dict(msg[1], grid, f"worker on GPU {d}")
                got[entry.index] = entry
                if on_entry:
                    on_entry(entry)
            else:
                fatal.append((d, msg[1], msg[2]))
    for p in procs.values():
        p.join(timeout=5.0)
    if fatal:
        d, name, message = fatal[0]
        more = f" (and {len(fatal) - 1} more worker(s))" if len(fatal) > 1 else ""
        raise _REBUILT.get(name, RuntimeError)(f"GPU {d}: {message}{more}")
    for d, p in procs.items():  # cases a worker never reported: it died or stopped early
        why = f"the worker on GPU {d} stopped (exit code {p.exitcode}) before measuring this case"
        for i, _ in jobs[d]:
            if i not in got:
                got[i] = Entry(i, grid.cases[i], error=why, device=d, shard=shard_label)
                if on_entry:
                    on_entry(got[i])
    return [got[i] for i in indices]


# ---- torchrun ranks ------------------------------------------------------------------------

def torchrun_env(environ=None):
    """(rank, world_size, local_rank) when started by torchrun (RANK and WORLD_SIZE set), else None.

    Examples
    --------
    >>> from attnbench.multi import torchrun_env
    >>> torchrun_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"}), torchrun_env({})
    ((3, 8, 3), None)
    """
    environ = os.environ if environ is None else environ
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return None
    try:
        rank, world, local = int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers, got "
                         f"{environ.get('RANK')!r}, {environ.get('WORLD_SIZE')!r}, {environ.get('LOCAL_RANK')!r}")
    if not (0 <= rank < world and local >= 0):
        raise ValueError(f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}: need 0 <= RANK < WORLD_SIZE")
    return rank, world, local


def run_id(environ=None):
    """What tells this torchrun launch from an earlier one writing to the same folder."""
    environ = os.environ if environ is None else environ
    return f"{environ.get('TORCHELASTIC_RUN_ID', '')}#{environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"


def piece_paths(out, rank, world):
    """(piece JSON, completion marker) of `rank` in the output folder."""
    stem = os.path.join(out, PIECES_DIR, f"rank-{rank:05d}-of-{world:05d}")
    return stem + ".json", stem + ".done"


def write_piece(report, out, rank, world, rid):
    """Write this rank's report, then its marker (the marker last: its presence means the piece is whole)."""
    path, marker = piece_paths(out, rank, world)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write(path, report.to_json(samples=True))
    _write(marker, json.dumps({"fingerprint": report.grid.fingerprint, "run_id": rid, "rank": rank,
                               "cases": len(report.entries)}))


def clear_piece(out, rank, world):
    """Remove what an earlier run left for this rank, so rank 0 cannot mistake it for this run's."""
    for p in piece_paths(out, rank, world)[::-1]:
        try:
            os.remove(p)
        except FileNotFoundError:
            pass


def _marker_ok(marker, fingerprint, rid):
    try:
        with open(marker, encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError):
        return False
    return m.get("fingerprint") == fingerprint and m.get("run_id") == rid


def gather_pieces(out, world, grid, rid, timeout=GATHER_TIMEOUT_S, poll=GATHER_POLL_S):
    """Wait (at most `timeout` s) for every rank's marker, then load the pieces in rank order.

    Raises TimeoutError naming the ranks that did not finish.
    """
    deadline = time.monotonic() + timeout
    while True:
        missing = [r for r in range(world) if not _marker_ok(piece_paths(out, r, world)[1], grid.fingerprint, rid)]
        if not missing:
            return [Report.load(piece_paths(out, r, world)[0]) for r in range(world)]
        if time.monotonic() >= deadline:
            raise TimeoutError(f"rank(s) {', '.join(map(str, missing))} of {world} did not finish within "
                               f"{timeout:g} s (no completion marker in {os.path.join(out, PIECES_DIR)})")
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))


def sweep_ranked(grid, out, rank, world, local_rank, runner=None, progress=None, timeout=GATHER_TIMEOUT_S, rid="",
                 **kwargs):
    """This rank's part of a torchrun sweep: its shard on GPU `local_rank`, written to `out`.

    Returns (piece, merged): merged is the whole grid's Report on rank 0, None on the others.
    """
    grid = load_grid(grid)
    clear_piece(out, rank, world)
    piece = sweep(grid, runner, progress, device=local_rank, shard=(rank + 1, world), **kwargs)
    write_piece(piece, out, rank, world, rid)
    if rank != 0:
        return piece, None
    return piece, merge(gather_pieces(out, world, piece.grid, rid, timeout))
