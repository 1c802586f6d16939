"""Grid files and presets: parsing, every rejection path (file, key and reason named), shards."""
import doctest
import os
import re

import pytest

import attnbench
import attnbench.grid
from attnbench.grid import Grid, load_grid, parse_grid, parse_shard, presets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANCHORS = [p for p in (os.path.join(ROOT, "shared", "ANCHORS.md"), "/work/shared/ANCHORS.md") if os.path.isfile(p)]


def test_docstring_examples_run():
    assert doctest.testmod(attnbench.grid).failed == 0


@pytest.mark.parametrize("name,count", [("mission", 4), ("canonical", 14), ("small", 6), ("long", 24),
                                        ("wide", 8), ("stress", 40), ("h200", 36)])
def test_every_preset_parses(name, count):
    g = load_grid(name)
    assert g.name == name and len(g) == count and g.description
    assert len({c.key for c in g}) == count
    assert g.timing["mode"] == "cold"


def test_preset_contents():
    assert all(c.shape == (1, 8, 512, 64) for c in load_grid("mission"))
    assert {c.shape for c in load_grid("canonical")} >= {(4, 8, 512, 64), (1, 16, 16384, 128)}
    assert all(c.S >= 1024 for c in load_grid("long"))
    assert all(c.D == 128 for c in load_grid("wide"))
    stress = list(load_grid("stress"))
    assert any(c.Hkv != c.H for c in stress) and any(c.Sk != c.S for c in stress)
    assert any(c.S % 64 for c in stress) and any(c.D not in (64, 128) for c in stress)
    assert load_grid("small").timing["max_seconds"] == 0.5


def _anchor_rows(path):
    rows = set()
    for line in open(path, encoding="utf-8"):
        m = re.match(r"\| (float16|bfloat16) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (no|yes) \|", line)
        if m:
            dt, B, H, S, D, causal = m.groups()
            rows.add((dt, int(B), int(H), int(S), int(D), causal == "yes"))
    return rows


def test_h200_preset_is_the_anchor_grid():
    g = load_grid("h200")
    ours = [(c.dtype, c.B, c.H, c.S, c.D, c.causal) for c in g]
    assert len(ours) == 36 == len(set(ours))
    assert all(c.Sk == c.S and c.Hkv == c.H and c.impl == "auto" for c in g)
    assert set(g.cases[0].backends) == {"default", "flash", "efficient", "cudnn"}
    if not ANCHORS:
        pytest.skip("shared/ANCHORS.md is not in this checkout")
    assert set(ours) == _anchor_rows(ANCHORS[0])


def test_matrix_and_case_tables(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text("""
backends = ["flash", "cudnn"]
[timing]
mode = "hot"
max_seconds = 1
[[matrix]]
shapes = [[1, 8, 512, 64], {B = 2, H = 8, S = 256, D = 128, Hkv = 2, Sk = 300}]
dtypes = ["fp16", "bfloat16"]
causal = [false, true]
impls = ["auto", "naive"]
[[case]]
shape = [1, 3, 77, 80]
dtype = "half"
causal = true
impl = "naive"
backends = ["math"]
config = "default"
""")
    g = load_grid(str(p))
    assert g.name == "mine" and g.source == str(p) and len(g) == 2 * 2 * 2 * 2 + 1
    assert g.timing["mode"] == "hot" and g.timing["max_seconds"] == 1 and g.timing["min_samples"] == 20
    first, gqa, last = g.cases[0], g.cases[4], g.cases[-1]
    assert first.key == "1x8x512x64 fp16 auto" and first.reference == "flash"
    assert gqa.key == "2x8x256x128 Hkv=2 Sk=300 fp16 auto" and (gqa.Hkv, gqa.Sk) == (2, 300)
    assert last.key == "1x3x77x80 fp16 causal naive:default" and last.backends == ("math",)
    assert last.reference == "math"
    kw = first.run_kwargs()
    assert kw["dtype"] == "float16" and kw["Sk"] == 512 and kw["backends"] == ("flash", "cudnn")


BAD = [
    ("shapes = 1", "x.toml: shapes: unknown key"),
    ("[[matrix]]\nshapes = [[1, 8, 512]]", "matrix[0].shapes[0]: a shape is [B, H, S, D]"),
    ("[[matrix]]\nshapes = [[1, 8, 512, 0]]", "matrix[0].shapes[0].D: must be >= 1, got 0"),
    ("[[matrix]]\nshapes = [[1, 8, 512.0, 64]]", "matrix[0].shapes[0].S: must be an integer, got 512.0"),
    ("[[matrix]]\nshapes = [[1, true, 512, 64]]", "matrix[0].shapes[0].H: must be an integer, got True"),
    ("[[matrix]]\nshapes = [{B=1, H=8, S=64, D=64, Hkv=3}]", "matrix[0].shapes[0]: H=8 is not a multiple of Hkv=3"),
    ("[[matrix]]\nshapes = [{B=1, H=8, S=64}]", "matrix[0].shapes[0]: missing D"),
    ("[[matrix]]\nshapes = [{B=1, H=8, S=64, D=64, Sq=3}]", "matrix[0].shapes[0].Sq: unknown key"),
    ("[[matrix]]\nshapes = [{B=1, H=8, S=64, D=64, Sk=-1}]", "matrix[0].shapes[0].Sk: must be >= 1"),
    ("[[matrix]]\nshapes = []", "matrix[0].shapes: must be a non-empty list"),
    ("[[matrix]]\ndtypes = ['bf16']", "matrix[0].shapes: missing"),
    ("[[matrix]]\nshapes = [[1, 8, 64, 64]]\ndtypes = ['int8']", "matrix[0].dtypes: unknown dtype 'int8'"),
    ("[[matrix]]\nshapes = [[1, 8, 64, 64]]\ndtypes = ['fp32']", "matrix[0].dtypes: unknown dtype 'fp32'"),
    ("[[matrix]]\nshapes = [[1, 8, 64, 64]]\ncausal = ['yes']", "matrix[0].causal: must be true or false"),
    ("[[matrix]]\nshapes = [[1, 8, 64, 64]]\ncausal = []", "matrix[0].causal: must not be empty"),
    ("[[matrix]]\nshapes = [[1, 8, 64, 64]]\nimpls = ['bogus']", "matrix[0].impls: unknown kernel 'bogus'"),
    ("[[matrix]]\nshapes = [[1, 8, 64, 64]]\nbackends = ['fast']", "matrix[0].backends[0]: unknown backend 'fast'"),
    ("[[matrix]]\nshapes = [[1, 8, 64, 64]]\nbackends = []", "matrix[0].backends: must be a non-empty list"),
    ("[[matrix]]\nshapes = [[1, 8, 64, 64]]\nbackends = ['flash', 'flash']",
     "matrix[0].backends: lists a backend twice"),
    ("[[matrix]]\nshapes = [[1, 8, 64, 64]]\nbackends = ['flash']\nreference = 'cudnn'",
     "matrix[0].reference: reference 'cudnn' is not one of the backends"),
    ("reference = 'math'\n[[matrix]]\nshapes = [[1, 8, 64, 64]]", "x.toml: reference: reference 'math' is not one"),
    ("[[matrix]]\nshapes = [[1, 8, 64, 64]]\nconfig = 3", "matrix[0].config: must be a kernel config name"),
    ("[[matrix]]\nshapes = [[1, 8, 64, 64]]\ncolour = 'red'", "matrix[0].colour: unknown key"),
    ("[[case]]\nshape = [1, 8, 64, 64]\ndtype = ['bf16', 'fp16']", "case[0].dtype: a [[case]] takes one value"),
    ("[[case]]\ndtype = 'bf16'", "case[0].shape: missing"),
    ("[[case]]\nshape = 'big'", "case[0].shape: a shape is [B, H, S, D] or a table"),
    ("[[case]]\nshape = [1, 8, 64, 64]\nimpl = 'nope'", "case[0].impl: unknown kernel 'nope'"),
    ("[[case]]\nshape = [1, 8, 64, 64]\n[[case]]\nshape = [1, 8, 64, 64]",
     "case[1]: case '1x8x64x64 bf16 auto' is already listed by case[0]"),
    ("[[matrix]]\nshapes = [[1, 8, 64, 64], [1, 8, 64, 64]]", "matrix[0]: case '1x8x64x64 bf16 auto' is already"),
    ("[timing]\nmode = 'lukewarm'\n[[case]]\nshape = [1, 8, 64, 64]", "timing.mode: must be one of"),
    ("[timing]\nmax_seconds = 0\n[[case]]\nshape = [1, 8, 64, 64]", "timing.max_seconds: must lie in (0.0, inf)"),
    ("[timing]\nmin_samples = 2.5\n[[case]]\nshape = [1, 8, 64, 64]", "timing.min_samples: must be an integer"),
    ("[timing]\nseed = -1\n[[case]]\nshape = [1, 8, 64, 64]", "timing.seed: must be >= 0"),
    ("[timing]\nconfidence = 1.0\n[[case]]\nshape = [1, 8, 64, 64]", "timing.confidence: must lie in (0.0, 1.0)"),
    ("[timing]\nblocking = 1\n[[case]]\nshape = [1, 8, 64, 64]", "timing.blocking: must be true or false"),
    ("[timing]\nwarmup = 3\n[[case]]\nshape = [1, 8, 64, 64]", "timing.warmup: unknown key"),
    ("timing = 3\n[[case]]\nshape = [1, 8, 64, 64]", "timing: must be a table"),
    ("name = ''\n[[case]]\nshape = [1, 8, 64, 64]", "x.toml: name: must be a non-empty string"),
    ("matrix = 3", "x.toml: matrix: must be an array of tables"),
    ("name = 'empty'", "x.toml: matrix: no cases"),
    ("[[matrix]\nshapes = 1", "x.toml: TOML: "),
]


@pytest.mark.parametrize("text,message", BAD)
def test_rejections_name_the_file_the_key_and_the_reason(tmp_path, text, message):
    p = tmp_path / "x.toml"
    p.write_text(text)
    with pytest.raises(ValueError) as e:
        load_grid(str(p))
    msg = str(e.value)
    assert msg.startswith(str(p) + ": ") and message.replace("x.toml", str(p)) in msg, msg


def test_missing_grid_and_bad_argument():
    with pytest.raises(ValueError, match="no-such.toml: grid: no such file, and no preset .*h200"):
        load_grid("no-such.toml")
    with pytest.raises(TypeError):
        load_grid(3)
    g = load_grid("small")
    assert load_grid(g) is g


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_shards_cover_the_grid_exactly_once(n):
    g = load_grid("h200")
    pieces = [g.shard(k, n) for k in range(1, n + 1)]
    flat = sorted(i for p in pieces for i in p)
    assert flat == list(range(len(g)))
    assert max(map(len, pieces)) - min(map(len, pieces)) <= 1
    assert pieces == [g.shard(k, n) for k in range(1, n + 1)]  # deterministic


@pytest.mark.parametrize("text", ["0/3", "4/3", "1", "a/b", "1/0", "-1/2", "1/2/3"])
def test_bad_shards(text):
    with pytest.raises(ValueError, match="K/N"):
        parse_shard(text)


def test_overrides_round_trip_and_fingerprint():
    g = load_grid("mission")
    h = g.with_overrides(impl="naive", max_seconds=0.25, mode=None)
    assert all(c.impl == "naive" for c in h) and h.timing["max_seconds"] == 0.25 and h.timing["mode"] == "cold"
    assert h.fingerprint != g.fingerprint
    with pytest.raises(ValueError, match="command-line override.*timing.mode"):
        g.with_overrides(mode="tepid")
    with pytest.raises(ValueError, match="impl: unknown kernel"):
        g.with_overrides(impl="bogus")
    d = g.to_dict()
    back = Grid.from_dict(d)
    assert back == g and back.fingerprint == d["fingerprint"]
    d["cases"][0]["B"] = 7
    with pytest.raises(ValueError, match="fingerprint"):
        Grid.from_dict(d, where="r.json")
    with pytest.raises(ValueError, match="r.json: grid: malformed"):
        Grid.from_dict({"name": "x"}, where="r.json")


def test_parse_grid_from_a_string_and_exports():
    g = parse_grid("[[case]]\nshape = [2, 4, 16, 32]", source="inline")
    assert [c.key for c in g] == ["2x4x16x32 bf16 auto"] and g.name == "grid"
    assert attnbench.load_grid is load_grid and "h200" in presets()


@pytest.mark.parametrize("key,value,reason", [
    ("target_noise", "0.0", r"must lie in \(0.0"),
    ("min_samples", "200000", "timer's cap"),
])
def test_timing_values_the_timer_cannot_take(key, value, reason):
    with pytest.raises(ValueError, match=f"x.toml: timing.{key}: .*{reason}"):
        parse_grid(f"[timing]\n{key} = {value}\n[[case]]\nshape = [1, 8, 512, 64]\n", source="x.toml")
