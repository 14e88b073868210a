"""The disk cache of compiled object code: hits across processes, damage, races, keys.

The in-memory cache (``target._compiled``) means a module compiled twice in one process
never reaches the disk, so everything that needs the disk cache runs in fresh
processes: ``run_graphs`` compiles and runs a few small graphs there and reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc.codegen import cache, cache_dir, target
from graphc.compiler import compile_graph

REPO = Path(__file__).resolve().parents[2]

# Graph k scales by k + 2, so every k is another module (another cache entry).
SCRIPT = r"""
import json, sys
import numpy as np
import graphc
from graphc.codegen import cache_stats
from graphc.compiler import compile_graph

results = []
for k in map(int, sys.argv[1:]):
    scale = float(k + 2)

    def f(x, y):
        return graphc.softmax(x * scale, dim=-1) @ y + graphc.exp(y).sum(0)

    rng = np.random.default_rng(k)
    x = graphc.from_numpy(rng.standard_normal((16, 32)).astype(np.float32))
    y = graphc.from_numpy(rng.standard_normal((32, 8)).astype(np.float32))
    cg = compile_graph(graphc.trace(f, x, y), x, y)
    got = cg(x, y).numpy()
    with graphc.no_grad():
        want = f(x, y).numpy()
    results.append({"graph": k, "correct": bool(np.allclose(got, want, rtol=1e-5, atol=1e-5)),
                    "from_cache": "from the disk cache" in cg.explain()})
s = cache_stats
print(json.dumps({"results": results, "stats": {"hits": s.hits, "misses": s.misses,
                                                "rebuilt": s.rebuilt, "write_errors": s.write_errors},
                  "texts": {"hits": s.text_hits, "misses": s.text_misses}}))
"""


def _env(cache_root: Path | str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["GRAPHC_CACHE_DIR"] = str(cache_root)
    env.update(extra)
    return env


def _command(graphs) -> list[str]:
    return [sys.executable, "-c", SCRIPT, *map(str, graphs)]


def _report(stdout: str, stderr: str, returncode: int) -> dict:
    assert returncode == 0, f"the compiling process failed ({returncode}):\n{stderr}"
    report = json.loads(stdout.strip().splitlines()[-1])
    for r in report["results"]:
        assert r["correct"], f"graph {r['graph']} gave wrong results"
    return report


def run_graphs(cache_root: Path | str, graphs=(0,), **extra: str) -> dict:
    """Compile and run ``graphs`` in a fresh process using ``cache_root``; its report."""
    p = subprocess.run(_command(graphs), env=_env(cache_root, **extra), cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    return _report(p.stdout, p.stderr, p.returncode)


def entries(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.o"))


def leftovers(root: Path) -> list[str]:
    return [name for _, _, files in os.walk(root) for name in files if name.startswith(".tmp-")]


# ---- across processes ----------------------------------------------------------------------

def test_entry_written_by_one_process_is_a_hit_in_the_next(tmp_path):
    root = tmp_path / "cache"
    first = run_graphs(root)
    assert first["stats"] == {"hits": 0, "misses": 1, "rebuilt": 0, "write_errors": 0}
    assert not first["results"][0]["from_cache"]
    [entry] = entries(root)
    assert cache.read_entry(entry) is not None
    second = run_graphs(root)
    assert second["stats"] == {"hits": 1, "misses": 0, "rebuilt": 0, "write_errors": 0}
    assert second["results"][0]["from_cache"]
    assert entries(root) == [entry]


def _truncate(data: bytes) -> bytes:
    return data[:len(data) // 2]


def _flip_payload_byte(data: bytes) -> bytes:
    head = len(cache.MAGIC) + cache._HEADER.size
    k = head + (len(data) - head) // 2
    return data[:k] + bytes([data[k] ^ 0xFF]) + data[k + 1:]


def _foreign(data: bytes) -> bytes:
    return np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes()


def _empty(data: bytes) -> bytes:
    return b""


DAMAGE = {"truncated": _truncate, "flipped-payload-byte": _flip_payload_byte,
          "foreign-random-bytes": _foreign, "empty": _empty}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_entry_is_detected_and_rebuilt(tmp_path, damage):
    root = tmp_path / "cache"
    run_graphs(root)
    [entry] = entries(root)
    good = entry.read_bytes()
    entry.write_bytes(DAMAGE[damage](good))
    assert cache.read_entry(entry) is None
    rebuilt = run_graphs(root)
    assert rebuilt["stats"] == {"hits": 0, "misses": 1, "rebuilt": 1, "write_errors": 0}
    assert not rebuilt["results"][0]["from_cache"]
    assert cache.read_entry(entry) is not None  # written afresh
    assert run_graphs(root)["stats"] == {"hits": 1, "misses": 0, "rebuilt": 0, "write_errors": 0}


def test_entry_under_another_keys_name_is_rebuilt(tmp_path):
    # A sound entry copied to another key's file holds another module's symbols: loading
    # it must not happen (it crashed the process with SIGSEGV before the key was checked).
    root = tmp_path / "cache"
    run_graphs(root, (0,))
    [zero] = entries(root)
    run_graphs(root, (1,))
    [one] = [e for e in entries(root) if e != zero]
    one.write_bytes(zero.read_bytes())
    assert cache.read_entry(one) is None
    report = run_graphs(root, (1,))
    assert report["stats"] == {"hits": 0, "misses": 1, "rebuilt": 1, "write_errors": 0}
    assert cache.read_entry(one) is not None and cache.read_entry(zero) is not None


def test_cache_off_writes_nothing(tmp_path):
    root = tmp_path / "cache"
    for _ in range(2):
        report = run_graphs(root, (0, 1), GRAPHC_CACHE="0")
        assert report["stats"] == {"hits": 0, "misses": 0, "rebuilt": 0, "write_errors": 0}
        assert not any(r["from_cache"] for r in report["results"])
    assert not root.exists()


@pytest.fixture
def unwritable_cache_dir(tmp_path):
    """A cache directory this process cannot write to.

    A directory with mode 0o500 where that blocks writes; as root it does not, so then a
    path under a regular file, which can never be created.
    """
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    probe = readonly / "probe"
    try:
        probe.write_bytes(b"")
    except PermissionError:
        yield readonly
        readonly.chmod(0o700)
        return
    probe.unlink()
    readonly.chmod(0o700)
    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"not a directory")
    yield a_file / "cache"
    assert a_file.read_bytes() == b"not a directory"


def test_unwritable_cache_dir_still_compiles(unwritable_cache_dir):
    for _ in range(2):
        report = run_graphs(unwritable_cache_dir, (0, 1))
        # each graph's object code and its program's IR text
        assert report["stats"] == {"hits": 0, "misses": 2, "rebuilt": 0, "write_errors": 4}
    if unwritable_cache_dir.is_dir():  # the read-only directory: still empty
        assert not any(unwritable_cache_dir.iterdir())


def test_concurrent_processes_share_a_fresh_cache_dir(tmp_path):
    root = tmp_path / "cache"
    graphs = (0, 1, 2, 3)
    procs = [subprocess.Popen(_command(graphs), env=_env(root), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    finished = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    for out, err, returncode in finished:
        stats = _report(out, err, returncode)["stats"]
        assert stats["hits"] + stats["misses"] == len(graphs)
        assert stats["rebuilt"] == 0 and stats["write_errors"] == 0  # never saw a torn file
    found = entries(root)
    assert len(found) == len(graphs)
    assert all(cache.read_entry(e) is not None for e in found)
    assert leftovers(root) == []
    after = run_graphs(root, graphs)
    assert after["stats"]["hits"] == len(graphs)
    assert all(r["from_cache"] for r in after["results"])


# ---- entries and keys, in this process -----------------------------------------------------

def test_entry_round_trip_and_damage(tmp_path):
    path = tmp_path / "ab" / "entry.o"
    payload = bytes(range(256)) * 10
    assert cache.write_entry(path, payload)
    assert cache.read_entry(path) == payload
    data = path.read_bytes()
    assert data.startswith(cache.MAGIC)
    for name, damage in DAMAGE.items():
        path.write_bytes(damage(data))
        assert cache.read_entry(path) is None, name
    path.write_bytes(data + b"\0")  # a trailing byte: the length no longer matches
    assert cache.read_entry(path) is None
    renamed = tmp_path / "ab" / "other.o"
    renamed.write_bytes(data)  # sound, but written for another key
    assert cache.read_entry(renamed) is None
    assert cache.read_entry(tmp_path / "missing.o") is None
    assert leftovers(tmp_path) == []


def test_entry_of_another_cache_is_rejected(tmp_path):
    # a sound entry, copied into another cache directory: not sealed with that one's secret
    payload = b"payload"
    assert cache.write_entry(tmp_path / "one" / "ab" / "entry.o", payload)
    assert cache.write_entry(tmp_path / "two" / "ab" / "other.o", payload)  # two's secret
    (tmp_path / "two" / "ab" / "entry.o").write_bytes((tmp_path / "one" / "ab" / "entry.o").read_bytes())
    assert cache.read_entry(tmp_path / "two" / "ab" / "entry.o") is None
    assert cache.read_entry(tmp_path / "two" / "ab" / "other.o") == payload


def test_secret_others_can_read_is_replaced(tmp_path):
    entry = tmp_path / "ab" / "entry.o"
    assert cache.write_entry(entry, b"payload")
    secret = tmp_path / cache.SECRET
    assert secret.stat().st_mode & 0o777 == 0o600
    old = secret.read_bytes()
    secret.chmod(0o644)
    assert cache.read_entry(entry) is None  # a secret others may have read vouches for nothing
    assert cache.write_entry(entry, b"payload")
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.read_bytes() != old
    assert cache.read_entry(entry) == b"payload"


@pytest.mark.skipif(cache._elf_machine() is None, reason="this host's object code is not ELF")
def test_check_object_gives_reasons():
    assert "ELF" in cache.check_object(b"\0" * 100)
    assert "shorter" in cache.check_object(b"\x7fELF")


def test_check_text_gives_reasons():
    text = b'define i32 @"__K__main"(i8** %".1")\n{\n}\ndefine internal void @"__K__E_8_0"() {\n}\n'
    assert cache.check_text(b"; ModuleID\n" + text, ["__K__main", "__K__E_8_0"]) is None
    assert "__K__E_8_1" in cache.check_text(b"; ModuleID\n" + text, ["__K__main", "__K__E_8_1"])
    assert cache.check_text(b"\xff\n" + text, []) == "not UTF-8 text"


def test_write_entry_refused_counts_an_error(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"x")
    before = cache.stats.write_errors
    assert cache.write_entry(a_file / "ab" / "entry.o", b"payload") is False
    assert cache.stats.write_errors == before + 1


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHC_CACHE", raising=False)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "here"))
    assert cache_dir() == tmp_path / "here"
    monkeypatch.setenv("GRAPHC_CACHE", "0")
    assert cache_dir() is None
    monkeypatch.delenv("GRAPHC_CACHE")
    monkeypatch.delenv("GRAPHC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "graphc"


def _llvm_source(scale: float) -> str:
    x = graphc.from_numpy(np.ones((4, 8), np.float32))
    cg = compile_graph(graphc.trace(lambda x: graphc.relu(x * scale).sum(-1), x), x)
    return cg.dump("llvm")


def test_cache_key_follows_the_ir():
    two, three = _llvm_source(2.0), _llvm_source(3.0)
    assert two != three
    assert cache.cache_key(two) != cache.cache_key(three)
    assert _llvm_source(2.0) == two  # the same graph again: the same module, the same key
    assert cache.cache_key(two) == cache.cache_key(two)
    assert len(cache.cache_key(two)) == 64


def test_cache_key_follows_version_and_host(monkeypatch):
    source = _llvm_source(2.0)
    key = cache.cache_key(source)
    monkeypatch.setattr(graphc, "__version__", graphc.__version__ + ".post1")
    assert cache.cache_key(source) != key
    monkeypatch.undo()
    assert cache.cache_key(source) == key
    host = target.host_description()
    monkeypatch.setattr(target, "host_description", lambda: {**host, "features": "-avx2"})
    assert cache.cache_key(source) != key
    monkeypatch.setattr(target, "host_description", lambda: {**host, "cpu": "generic"})
    assert cache.cache_key(source) != key


# ---- the programs' IR text -------------------------------------------------------------------

def text_entries(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.ll"))


def test_program_text_written_by_one_process_is_used_by_the_next(tmp_path):
    root = tmp_path / "cache"
    first = run_graphs(root, (0, 1))
    assert first["texts"] == {"hits": 0, "misses": 2}
    assert len(text_entries(root)) == 2
    second = run_graphs(root, (0, 1))  # results checked against eager in the process
    assert second["texts"] == {"hits": 2, "misses": 0}
    assert second["stats"]["hits"] == 2


def _lower_softmax(scale: float):
    from graphc.codegen.program import lower
    from graphc.compiler.pipeline import prepare
    from graphc.passes import plan_memory

    x = graphc.randn(8, 16)
    gm, _, _ = prepare(graphc.trace(lambda x: graphc.softmax(x * scale, dim=-1), x), (x,))
    return lower(gm, (x,), plan_memory(gm))


def test_program_text_from_the_cache_is_what_emission_gives(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    before = cache.stats.text_hits, cache.stats.text_misses
    fresh = _lower_softmax(2.0).ir
    again = _lower_softmax(2.0).ir
    assert (cache.stats.text_hits, cache.stats.text_misses) == (before[0] + 1, before[1] + 1)
    assert again == fresh
    monkeypatch.setenv("GRAPHC_CACHE", "0")
    assert _lower_softmax(2.0).ir == fresh  # emitted without the cache
    monkeypatch.delenv("GRAPHC_CACHE")
    other = _lower_softmax(3.0).ir  # another constant: another key
    assert other != fresh and len(text_entries(tmp_path)) == 2


def test_changed_emitter_code_does_not_meet_an_old_text(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    _lower_softmax(2.0)
    misses = cache.stats.text_misses
    monkeypatch.setattr(cache, "codegen_digest", lambda: "another version of the emitter")
    _lower_softmax(2.0)
    assert cache.stats.text_misses == misses + 1
    assert len(text_entries(tmp_path)) == 2


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_program_text_is_emitted_again(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    good = _lower_softmax(2.0).ir
    [entry] = text_entries(tmp_path)
    entry.write_bytes(DAMAGE[damage](entry.read_bytes()))
    misses = cache.stats.text_misses
    assert _lower_softmax(2.0).ir == good
    assert cache.stats.text_misses == misses + 1
    assert cache.read_entry(entry) is not None  # written afresh


def test_fingerprint_spells_sharing_sites_and_constants():
    from graphc import dtype as dt
    from graphc.codegen.kernel_ir import Affine, Apply, Kernel, Load, Loop, Store, Var, contiguous
    from graphc.codegen.cache import fingerprint
    from graphc.ops.registry import OPS

    def kernel(shared: bool, constant: float = 2.0):
        i = Var("i0", 8)
        x, y = contiguous(0, (8,), dt.float32), contiguous(1, (8,), dt.float32)
        load = Load(x, Affine(0, ((i, 1),)))

        def exp():
            return Apply(OPS.exp, (load,), {}, dt.float32, (None,), dt.float32, "exp")
        e = exp()
        total = Apply(OPS.add, (e, e if shared else exp()), {}, dt.float32, (None, None),
                      dt.float32, "add")
        scaled = Apply(OPS.mul, (total, load), {"alpha": constant}, dt.float32, (None, None),
                       dt.float32, "mul")
        body = [Loop(i, [Store(y, Affine(0, ((i, 1),)), scaled)], parallel=True)]
        return Kernel("E_8", "elementwise", [x], [y], body, 8), scaled

    shared, scaled = kernel(True)
    assert fingerprint(shared, {}) == fingerprint(kernel(True)[0], {})  # same structure
    assert fingerprint(shared, {}) != fingerprint(kernel(False)[0], {})  # exp once vs twice
    assert fingerprint(shared, {}) != fingerprint(kernel(True, 2.5)[0], {})
    assert fingerprint(shared, {}) != fingerprint(shared, {id(scaled): 1})  # an error site
    shared.body[0].body[0].value.attrs["alpha"] = 2  # int 2 is not float 2.0
    assert fingerprint(shared, {}) != fingerprint(kernel(True)[0], {})
    shared.body[0].note = object()  # something it cannot spell: no key at all
    with pytest.raises(TypeError):
        fingerprint(shared, {})


def test_a_patched_emitter_is_never_served_an_old_text(tmp_path, monkeypatch):
    from graphc.ops.registry import OPS

    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    good = _lower_softmax(2.0).ir
    exp = OPS["exp"].emit
    monkeypatch.setattr(OPS["exp"], "emit", lambda s, x: s.b.fadd(exp(s, x), s.c(0.01)))
    hits = cache.stats.text_hits
    patched = _lower_softmax(2.0).ir
    assert patched != good and cache.stats.text_hits == hits
