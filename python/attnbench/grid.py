"""Grids: the cases a sweep runs, read from TOML files (or the built-in presets).

A grid file names its cases in two ways, which may be mixed:

```toml
name = "mine"                        # optional; default the file's stem
description = "what it is for"       # optional
backends = ["default", "flash"]      # optional; default run()'s
reference = "default"                # optional; the backend the speedup gate uses

[timing]                             # optional; run()'s timing options, default run()'s defaults
mode = "cold"                        # cold | hot | graph
max_seconds = 2.0
min_samples = 20
target_noise = 0.005
blocking = true
seed = 0
threshold = 0.95
confidence = 0.95

[[matrix]]                           # a cross product: dtypes x shapes x causal x impls, in that order
shapes = [[1, 8, 512, 64], {B = 2, H = 32, S = 2048, D = 128, Hkv = 8, Sk = 4096}]
dtypes = ["fp16", "bf16"]            # default ["bf16"]
causal = [false, true]               # default [false]
impls = ["auto"]                     # default ["auto"]; registered kernel names or "auto"
# backends, reference, config: optional, for these cases only

[[case]]                             # one case
shape = [1, 8, 1000, 80]             # [B, H, S, D] or {B, H, S, D, Sk, Hkv}
dtype = "bf16"                       # default "bf16"
causal = true                        # default false
impl = "auto"                        # default "auto"
# backends, reference, config: optional
```

Matrix cases come first (in file order), then the ``[[case]]`` tables.
Anything else is refused with a ValueError naming the file, the key and the
reason, and so is a case listed twice.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import tomllib
from dataclasses import asdict, dataclass, field, replace
from importlib import resources

from . import api, harness, sdpa

#: Timing modes run() accepts (mirrors its own check).
MODES = ("cold", "hot", "graph")
#: The dtypes a grid may name, by their canonical names (run() times fp16/bf16 only).
GRID_DTYPES = ("float16", "bfloat16")
SHORT_DTYPE = {"float16": "fp16", "bfloat16": "bf16"}
SHAPE_KEYS = ("B", "H", "S", "D", "Sk", "Hkv")

#: attnbench.run's defaults, read from its signature (never retyped).
RUN_DEFAULTS = {k: p.default for k, p in inspect.signature(harness.run).parameters.items()
                 if p.default is not inspect.Parameter.empty}

TOP_KEYS = ("name", "description", "backends", "reference", "timing", "matrix", "case")
MATRIX_KEYS = ("shapes", "dtypes", "causal", "impls", "backends", "reference", "config")
CASE_KEYS = ("shape", "dtype", "causal", "impl", "backends", "reference", "config")


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _is_real(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_int(v, lo):
    if not _is_int(v):
        return f"must be an integer, got {v!r}"
    if v < lo:
        return f"must be >= {lo}, got {v}"
    return None


def _check_real(v, lo, hi=math.inf, lo_open=False, hi_open=True):
    if not _is_real(v) or not math.isfinite(v):
        return f"must be a finite number, got {v!r}"
    if (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
        return f"must lie in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}, got {v}"
    return None


#: Validators of the [timing] keys: each returns None or the reason the value is refused.
TIMING_CHECKS = {
    "mode": lambda v: None if v in MODES else f"must be one of {list(MODES)}, got {v!r}",
    "seed": lambda v: _check_int(v, 0),
    "max_seconds": lambda v: _check_real(v, 0.0, lo_open=True),
    "min_samples": lambda v: _check_int(v, 1) or (None if v <= harness.MAX_SAMPLES else
                                                  f"must be <= {harness.MAX_SAMPLES} (the timer's cap), got {v}"),
    "target_noise": lambda v: _check_real(v, 0.0, lo_open=True),
    "blocking": lambda v: None if isinstance(v, bool) else f"must be true or false, got {v!r}",
    "threshold": lambda v: _check_real(v, 0.0, lo_open=True),
    "confidence": lambda v: _check_real(v, 0.0, 1.0, lo_open=True),
}
TIMING_DEFAULTS = {k: RUN_DEFAULTS[k] for k in TIMING_CHECKS}


class _Source:
    """Where a grid came from, for error messages: 'grid.toml: matrix[0].shapes[2]: reason'."""

    def __init__(self, name):
        self.name = name

    def error(self, key, reason):
        return ValueError(f"{self.name}: {key}: {reason}")


@dataclass(frozen=True)
class Case:
    """One configuration of a grid: a shape, a dtype, a mask, a kernel and the backends it is timed against."""
    B: int
    H: int
    S: int
    D: int
    Sk: int
    Hkv: int
    dtype: str                 # "float16" or "bfloat16"
    causal: bool
    impl: str                  # a registered kernel or "auto"
    backends: tuple
    reference: str
    config: str | None = None

    @property
    def shape(self):
        return (self.B, self.H, self.S, self.D)

    @property
    def key(self):
        """What identifies the case across reports: shape, dtype, mask and requested kernel."""
        kv = (f" Hkv={self.Hkv}" if self.Hkv != self.H else "") + (f" Sk={self.Sk}" if self.Sk != self.S else "")
        cfg = f":{self.config}" if self.config else ""
        return (f"{self.B}x{self.H}x{self.S}x{self.D}{kv} {SHORT_DTYPE[self.dtype]}"
                f"{' causal' if self.causal else ''} {self.impl}{cfg}")

    def run_kwargs(self):
        """Keyword arguments of attnbench.run for this case (timing options come from the grid)."""
        return dict(impl=self.impl, dtype=self.dtype, causal=self.causal, backends=self.backends,
                    Sk=self.Sk, Hkv=self.Hkv, reference=self.reference, config=self.config)

    def to_dict(self):
        d = asdict(self)
        d["backends"] = list(self.backends)
        return d

    @classmethod
    def from_dict(cls, d):
        return cls(**{**d, "backends": tuple(d["backends"])})


@dataclass(frozen=True)
class Grid:
    """A named list of cases and the timing options they are run with.

    Examples
    --------
    >>> import attnbench
    >>> g = attnbench.load_grid("h200")
    >>> len(g), g.cases[0].key
    (36, '1x8x512x64 fp16 auto')
    """
    name: str
    cases: tuple
    timing: dict = field(default_factory=lambda: dict(TIMING_DEFAULTS))
    description: str = ""
    source: str = ""

    def __len__(self):
        return len(self.cases)

    def __iter__(self):
        return iter(self.cases)

    @property
    def fingerprint(self):
        """A digest of the cases and timing options: two reports come from the same grid iff theirs agree."""
        body = json.dumps({"cases": [c.to_dict() for c in self.cases], "timing": self.timing}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def shard(self, k, n):
        """The indices of shard k of n (1-based): every n-th case from the k-th.

        Interleaved rather than contiguous, so that each shard mixes short and long cases and the
        shards take about the same time.
        """
        k, n = check_shard(k, n)
        return [i for i in range(len(self.cases)) if i % n == k - 1]

    def with_overrides(self, impl=None, **timing):
        """A copy with every case's impl replaced and/or timing options changed (checked as in a file)."""
        src = _Source(f"grid {self.name!r} (command-line override)")
        cases = self.cases
        if impl is not None:
            _check_impl(impl, src, "impl")
            cases = tuple(replace(c, impl=impl) for c in cases)
            _check_unique([(c, f"case {i}") for i, c in enumerate(cases)], src)
        t = dict(self.timing)
        for k, v in timing.items():
            if v is not None:
                t[k] = v
        return replace(self, cases=cases, timing=_timing(t, src))

    def to_dict(self):
        return {"name": self.name, "description": self.description, "source": self.source,
                "fingerprint": self.fingerprint, "timing": dict(self.timing),
                "cases": [c.to_dict() for c in self.cases]}

    @classmethod
    def from_dict(cls, d, where="report"):
        """The grid a report recorded; ValueError if its fingerprint does not match its cases."""
        try:
            g = cls(name=d["name"], cases=tuple(Case.from_dict(c) for c in d["cases"]), timing=dict(d["timing"]),
                    description=d.get("description", ""), source=d.get("source", ""))
        except (KeyError, TypeError) as e:
            raise ValueError(f"{where}: grid: malformed ({type(e).__name__}: {e})") from None
        if d.get("fingerprint") not in (None, g.fingerprint):
            raise ValueError(f"{where}: grid.fingerprint: {d['fingerprint']} does not match its cases "
                             f"({g.fingerprint}); was the file edited?")
        return g


def check_shard(k, n):
    """(k, n) as ints with 1 <= k <= n, else ValueError.

    Examples
    --------
    >>> from attnbench.grid import check_shard
    >>> check_shard(1, 4)
    (1, 4)
    """
    if not (_is_int(k) and _is_int(n) and 1 <= k <= n):
        raise ValueError(f"shard must be K/N with integers 1 <= K <= N, got {k}/{n}")
    return k, n


def parse_shard(text):
    """'K/N' -> (K, N), 1-based.

    Examples
    --------
    >>> from attnbench.grid import parse_shard
    >>> parse_shard("2/4")
    (2, 4)
    """
    if isinstance(text, tuple):
        return check_shard(*text)
    parts = str(text).split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"shard must be K/N with integers 1 <= K <= N, got {text!r}")
    return check_shard(int(parts[0]), int(parts[1]))


# ---- parsing ---------------------------------------------------------------------------

def _unknown(table, allowed, src, where):
    for k in table:
        if k not in allowed:
            raise src.error(f"{where}{k}", f"unknown key; allowed: {', '.join(allowed)}")


def _as_list(v, plural, src, key):
    """A matrix field may hold one value or a list; a case field holds exactly one."""
    if isinstance(v, list):
        if not plural:
            raise src.error(key, f"a [[case]] takes one value, got a list {v!r}; use a [[matrix]] for several")
        return v
    return [v]


def _shape(spec, src, key):
    """(B, H, S, D, Sk, Hkv) from [B, H, S, D] or {B, H, S, D, Sk?, Hkv?}."""
    if isinstance(spec, list):
        if len(spec) != 4:
            raise src.error(key, f"a shape is [B, H, S, D] (4 integers) or a table with B, H, S, D, Sk, Hkv; "
                                 f"got {len(spec)} values")
        vals = dict(zip("BHSD", spec))
    elif isinstance(spec, dict):
        _unknown(spec, SHAPE_KEYS, src, key + ".")
        missing = [k for k in "BHSD" if k not in spec]
        if missing:
            raise src.error(key, f"missing {', '.join(missing)}")
        vals = dict(spec)
    else:
        raise src.error(key, f"a shape is [B, H, S, D] or a table, got {spec!r}")
    vals.setdefault("Sk", vals["S"])
    vals.setdefault("Hkv", vals["H"])
    for name in SHAPE_KEYS:
        why = _check_int(vals[name], 1)
        if why:
            raise src.error(f"{key}.{name}", why)
    if vals["H"] % vals["Hkv"]:
        raise src.error(key, f"H={vals['H']} is not a multiple of Hkv={vals['Hkv']} (grouped-query attention)")
    return tuple(vals[k] for k in SHAPE_KEYS)


def _dtype(v, src, key):
    name = sdpa.DTYPES.get(v) if isinstance(v, str) else None
    if name not in GRID_DTYPES:
        raise src.error(key, f"unknown dtype {v!r}; use fp16 or bf16 (or float16, bfloat16)")
    return name


def _bool(v, src, key):
    if not isinstance(v, bool):
        raise src.error(key, f"must be true or false, got {v!r}")
    return v


def _check_impl(v, src, key):
    names = [k["name"] for k in api.kernels()]
    if not isinstance(v, str) or (v != "auto" and v not in names):
        raise src.error(key, f"unknown kernel {v!r}; registered: {', '.join(names)} or 'auto'")
    return v


def _backends(v, src, key):
    if not isinstance(v, list) or not v:
        raise src.error(key, f"must be a non-empty list of backends from {list(sdpa.BACKENDS)}, got {v!r}")
    for i, b in enumerate(v):
        if b not in sdpa.BACKENDS:
            raise src.error(f"{key}[{i}]", f"unknown backend {b!r}; use {', '.join(sdpa.BACKENDS)}")
    if len(set(v)) != len(v):
        raise src.error(key, f"lists a backend twice: {v}")
    return tuple(v)


def _reference(ref, backends, src, key):
    if ref is None:
        return RUN_DEFAULTS["reference"] if RUN_DEFAULTS["reference"] in backends else backends[0]
    if ref not in backends:
        raise src.error(key, f"reference {ref!r} is not one of the backends {list(backends)}")
    return ref


def _config(v, src, key):
    if v is not None and not isinstance(v, str):
        raise src.error(key, f"must be a kernel config name (a string), got {v!r}")
    return v


def _timing(t, src):
    if not isinstance(t, dict):
        raise src.error("timing", "must be a table")
    _unknown(t, tuple(TIMING_CHECKS), src, "timing.")
    for k, v in t.items():
        why = TIMING_CHECKS[k](v)
        if why:
            raise src.error(f"timing.{k}", why)
    return {**TIMING_DEFAULTS, **t}


#: The keys of the four crossed fields, in a [[matrix]] table and in a [[case]] table.
_FIELDS = {True: ("shapes", "dtypes", "causal", "impls"), False: ("shape", "dtype", "causal", "impl")}


def _cases_of(table, where, plural, defaults, src):
    """The cases one [[matrix]] (plural=True) or [[case]] table describes."""
    shape_key, dtype_key, causal_key, impl_key = (f"{where}.{k}" for k in _FIELDS[plural])
    shape_name, dtype_name, causal_name, impl_name = _FIELDS[plural]
    backends = _backends(table["backends"], src, f"{where}.backends") if "backends" in table else defaults["backends"]
    reference = _reference(table.get("reference", defaults["reference"]), backends, src,
                           f"{where}.reference" if "reference" in table else "reference")
    config = _config(table.get("config"), src, f"{where}.config")
    if shape_name not in table:
        raise src.error(shape_key, "missing: every case needs a shape")
    if plural:
        if not isinstance(table["shapes"], list) or not table["shapes"]:
            raise src.error(shape_key, "must be a non-empty list of shapes")
        shapes = [_shape(s, src, f"{shape_key}[{i}]") for i, s in enumerate(table["shapes"])]
    else:
        shapes = [_shape(table["shape"], src, shape_key)]
    dtypes = [_dtype(v, src, dtype_key) for v in _as_list(table.get(dtype_name, "bf16"), plural, src, dtype_key)]
    causals = [_bool(v, src, causal_key) for v in _as_list(table.get(causal_name, False), plural, src, causal_key)]
    impls = [_check_impl(v, src, impl_key) for v in _as_list(table.get(impl_name, "auto"), plural, src, impl_key)]
    for key, vals in ((dtype_key, dtypes), (causal_key, causals), (impl_key, impls)):
        if not vals:
            raise src.error(key, "must not be empty")
    return [Case(B, H, S, D, Sk, Hkv, dt, c, impl, backends, reference, config)
            for dt in dtypes for (B, H, S, D, Sk, Hkv) in shapes for c in causals for impl in impls]


def _check_unique(cases_with_origin, src):
    seen = {}
    for case, origin in cases_with_origin:
        if case.key in seen:
            raise src.error(origin, f"case '{case.key}' is already listed by {seen[case.key]}")
        seen[case.key] = origin


def parse_grid(data, source="<grid>", default_name="grid"):
    """A Grid from a TOML document (str) or its parsed dict; errors name `source`.

    Examples
    --------
    >>> from attnbench.grid import parse_grid
    >>> g = parse_grid('[[matrix]]\\nshapes = [[1, 8, 512, 64]]\\ncausal = [false, true]')
    >>> [c.key for c in g]
    ['1x8x512x64 bf16 auto', '1x8x512x64 bf16 causal auto']
    """
    src = _Source(source)
    if isinstance(data, str):
        try:
            data = tomllib.loads(data)
        except tomllib.TOMLDecodeError as e:
            raise src.error("TOML", str(e)) from None
    _unknown(data, TOP_KEYS, src, "")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise src.error("name", f"must be a non-empty string, got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise src.error("description", f"must be a string, got {description!r}")
    backends = (_backends(data["backends"], src, "backends") if "backends" in data
                else tuple(RUN_DEFAULTS["backends"]))
    _reference(data.get("reference"), backends, src, "reference")  # each case resolves its own below
    timing = _timing(data.get("timing", {}), src)
    defaults = {"backends": backends, "reference": data.get("reference")}
    found = []
    for section, keys, plural in (("matrix", MATRIX_KEYS, True), ("case", CASE_KEYS, False)):
        tables = data.get(section, [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise src.error(section, f"must be an array of tables ([[{section}]])")
        for i, table in enumerate(tables):
            where = f"{section}[{i}]"
            _unknown(table, keys, src, where + ".")
            found += [(c, where) for c in _cases_of(table, where, plural, defaults, src)]
    if not found:
        raise src.error("matrix", "no cases: add a [[matrix]] or a [[case]] table")
    _check_unique(found, src)
    return Grid(name=name, cases=tuple(c for c, _ in found), timing=timing, description=description,
                source=source)


def presets():
    """The names of the built-in grids.

    Examples
    --------
    >>> from attnbench.grid import presets
    >>> "h200" in presets() and "mission" in presets()
    True
    """
    files = resources.files("attnbench").joinpath("presets")
    return sorted(f.name[:-5] for f in files.iterdir() if f.name.endswith(".toml"))


def load_grid(grid):
    """A Grid from a TOML file, a preset name, or a Grid (returned as is).

    Parameters
    ----------
    grid : str, os.PathLike or Grid
        A path to a TOML grid file, or one of :func:`presets` ('mission',
        'canonical', 'small', 'long', 'wide', 'stress', 'h200').

    Returns
    -------
    Grid

    Raises
    ------
    ValueError
        If the file does not exist and no preset has that name, or the grid is
        malformed (the message names the file, the key and the reason).

    Examples
    --------
    >>> import attnbench
    >>> [c.key for c in attnbench.load_grid("mission")][:2]
    ['1x8x512x64 fp16 auto', '1x8x512x64 fp16 causal auto']
    """
    if isinstance(grid, Grid):
        return grid
    if not isinstance(grid, (str, os.PathLike)):
        raise TypeError(f"grid must be a path, a preset name or a Grid, got {type(grid).__name__}")
    path = os.fspath(grid)
    if os.path.isfile(path):
        with open(path, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: TOML: not UTF-8 text ({e})") from None
        return parse_grid(text, source=path, default_name=os.path.splitext(os.path.basename(path))[0])
    if path in presets():
        res = resources.files("attnbench").joinpath("presets", path + ".toml")
        return parse_grid(res.read_text(encoding="utf-8"), source=f"preset {path!r}", default_name=path)
    raise ValueError(f"{path}: grid: no such file, and no preset of that name; presets: {', '.join(presets())}")
