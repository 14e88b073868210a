"""Whatever is in the disk cache, a compile neither crashes, hangs nor computes wrong values.

Each case damages a copy of a sound cache, then compiles ``(x * 2).exp()`` in a fresh
process: it must exit 0 with eager's values, having rejected the damage for the reason
named (so a test fails if that protection is removed, even where LLVM would happen to
survive it), and rewritten the entry; a second process must then find every entry sound.
Without the protections these cases aborted the process (``LLVM ERROR``, SIGILL), ran
another program's code, or blocked it forever.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graphc.codegen import cache
from tests.codegen.test_cache import REPO, _env

SCRIPT = r"""
import json, sys
import numpy as np
import graphc
from graphc.codegen import cache_stats as s

scale, rows = float(sys.argv[1]), int(sys.argv[2])
x = graphc.from_numpy(np.linspace(-1, 1, rows * 4, dtype=np.float32).reshape(rows, 4))
f = graphc.compile(lambda x: (x * scale).exp())
with graphc.no_grad():
    got, want = f(x).numpy(), (x * scale).exp().numpy()
print(json.dumps({"got": got.tolist(), "want": want.tolist(), "hits": s.hits, "misses": s.misses,
                  "text_hits": s.text_hits, "text_misses": s.text_misses, "rebuilt": s.rebuilt,
                  "write_errors": s.write_errors, "rejected": list(s.rejected)}))
"""

THIS = ("2", "3")    # the program every case compiles: (x * 2).exp() on a 3x4 input
OTHER = ("3", "5")   # another program: another constant, another shape, other kernels
TWIN = ("3", "3")    # another program with the same kernels: only the constant differs


def compile_in_process(root: Path, program=THIS) -> dict:
    """Compile and run ``program`` in a fresh process using the cache at ``root``; its
    report, once it has exited 0 with eager's values."""
    try:
        p = subprocess.run([sys.executable, "-c", SCRIPT, *program], env=_env(root), cwd=REPO,
                           capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the compiling process blocked for 30 s")
    assert p.returncode == 0, f"the compiling process died ({p.returncode}):\n{p.stderr[-2000:]}"
    report = json.loads(p.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(report["got"], report["want"], rtol=1e-6)
    return report


def only(root: Path, suffix: str) -> Path:
    [entry] = root.glob(f"*/*{suffix}")
    return entry


@pytest.fixture(scope="module")
def sound(tmp_path_factory) -> Path:
    """A cache written by compiling the program: its secret, one object, one text."""
    root = tmp_path_factory.mktemp("sound") / "cache"
    compile_in_process(root)
    assert only(root, ".o") and only(root, ".ll")
    return root


@pytest.fixture(scope="module")
def others(tmp_path_factory) -> dict[str, Path]:
    """Caches of other programs (each with its own secret)."""
    roots = {}
    for name, program in (("other", OTHER), ("twin", TWIN)):
        roots[name] = tmp_path_factory.mktemp(name) / "cache"
        compile_in_process(roots[name], program)
    return roots


# ---- kinds of damage: each takes the cache, its object entry and its text entry ---------------

def unkeyed(entry: Path, payload: bytes) -> None:
    """An entry with a correct plain checksum of (key, payload), as a writer without this
    cache's secret (another tool, an older graphc) would make it."""
    digest = hashlib.sha256(entry.name.encode() + b"\0" + payload).digest()
    entry.write_bytes(cache.MAGIC + struct.pack("<Q32s", len(payload), digest) + payload)


def resealed(entry: Path, payload: bytes) -> None:
    """An entry sealed with this cache's own secret: only the content checks can catch it."""
    assert cache.write_entry(entry, payload)


def sections(obj: bytes) -> dict[str, tuple[int, int, int]]:
    """Section name -> (offset of its header, offset of its bytes, size), read independently."""
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shnum, shstrndx = struct.unpack_from("<HH", obj, 0x3C)
    headers = [shoff + 64 * i for i in range(shnum)]
    names = struct.unpack_from("<Q", obj, headers[shstrndx] + 24)[0]
    found = {}
    for h in headers:
        name, = struct.unpack_from("<I", obj, h)
        offset, size = struct.unpack_from("<QQ", obj, h + 24)
        found[obj[names + name:obj.index(b"\0", names + name)].decode()] = (h, offset, size)
    return found


def truncated_object(root, obj, text, others):
    resealed(obj, cache.read_entry(obj)[:-200])


def garbage_object(root, obj, text, others):
    resealed(obj, np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())


def flipped_section_size(root, obj, text, others):
    payload = bytearray(cache.read_entry(obj))
    code = [v for k, v in sections(payload).items() if k.startswith((".text", ".ltext"))]
    header, _, _ = max(code, key=lambda v: v[2])
    payload[header + 39] ^= 0x01  # the top byte of the size of the section holding the code
    resealed(obj, bytes(payload))


def flipped_constant_unkeyed(root, obj, text, others):
    # one bit-flipped float constant of exp's polynomial: sound ELF, wrong values
    payload = bytearray(cache.read_entry(obj))
    _, offset, _ = next(v for k, v in sections(payload).items() if k.startswith(".rodata"))
    payload[offset + 3] ^= 0x40
    unkeyed(obj, bytes(payload))


def other_module_object(root, obj, text, others):
    resealed(obj, cache.read_entry(only(others["other"], ".o")))


def other_program_text(root, obj, text, others):
    resealed(text, cache.read_entry(only(others["other"], ".ll")))


def other_program_text_unkeyed(root, obj, text, others):
    unkeyed(text, cache.read_entry(only(others["twin"], ".ll")))


def fifos(root, obj, text, others):
    for entry in (obj, text):
        entry.unlink()
        os.mkfifo(entry)


def symlinks_to(device: str):
    def damage(root, obj, text, others):
        for entry in (obj, text):
            entry.unlink()
            entry.symlink_to(device)
    return damage


def directories(root, obj, text, others):
    for entry in (obj, text):
        entry.unlink()
        entry.mkdir()


def secret_fifo(root, obj, text, others):
    (root / cache.SECRET).unlink()
    os.mkfifo(root / cache.SECRET)


# kind -> (damage, why the entries are rejected (a pattern), how many)
CASES = {
    "truncated-object": (truncated_object, "section header table goes past the end", 1),
    "garbage-object": (garbage_object, "not a 64-bit little-endian ELF file", 1),
    "flipped-section-size": (flipped_section_size, "goes past the end of the file", 1),
    "flipped-constant-plain-checksum": (flipped_constant_unkeyed, "not sealed by this cache", 1),
    "other-module-object": (other_module_object, "another module's code", 1),
    "other-program-text": (other_program_text, "another program's text", 1),
    "other-program-text-plain-checksum": (other_program_text_unkeyed, "not sealed by this cache", 1),
    "fifo": (fifos, "is a FIFO", 2),
    "symlink-to-urandom": (symlinks_to("/dev/urandom"), "is a symbolic link", 2),
    "symlink-to-zero": (symlinks_to("/dev/zero"), "is a symbolic link", 2),
    "directory": (directories, "is a directory", 2),
    # the first entry read finds no secret; the one read after the first rewrite, a new one
    "secret-is-a-fifo": (secret_fifo, "no usable secret.key|not sealed by this cache", 2),
}


def assert_rebuilt(root: Path, first: dict, reason: str, bad: int) -> None:
    """The first process rejected ``bad`` entries, each for ``reason`` (a pattern), and
    rewrote them; a second process finds every entry sound."""
    assert first["rebuilt"] == bad and len(first["rejected"]) == bad, first
    assert all(re.search(reason, why) for why in first["rejected"]), first["rejected"]
    assert first["write_errors"] == 0
    obj, text = only(root, ".o"), only(root, ".ll")
    assert all(stat.S_ISREG(e.lstat().st_mode) for e in (obj, text, root / cache.SECRET))
    assert cache.check_object(cache.read_entry(obj)) is None
    assert cache.read_entry(text) is not None
    second = compile_in_process(root)
    assert (second["hits"], second["text_hits"], second["rebuilt"]) == (1, 1, 0), second


@pytest.mark.parametrize("kind", list(CASES))
def test_damaged_entry_is_rejected_and_rebuilt(sound, others, tmp_path, kind):
    damage, reason, bad = CASES[kind]
    root = tmp_path / "cache"
    shutil.copytree(sound, root)
    damage(root, only(root, ".o"), only(root, ".ll"), others)
    assert_rebuilt(root, compile_in_process(root), reason, bad)


def test_symlinked_subdirectory_is_not_written_through(sound, tmp_path):
    root = tmp_path / "cache"
    shutil.copytree(sound, root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for sub in {only(root, ".o").parent, only(root, ".ll").parent}:
        shutil.rmtree(sub)
        sub.symlink_to(elsewhere, target_is_directory=True)
    first = compile_in_process(root)
    assert list(elsewhere.iterdir()) == []  # nothing written where the links pointed
    assert not any(sub.is_symlink() for sub in root.iterdir())
    assert_rebuilt(root, first, "is a symbolic link", 2)


def test_directory_with_files_in_an_entrys_place_is_left_alone(sound, tmp_path):
    root = tmp_path / "cache"
    shutil.copytree(sound, root)
    obj = only(root, ".o")
    obj.unlink()
    obj.mkdir()
    (obj / "keep").write_bytes(b"not the cache's")
    for _ in range(2):  # compiled each time, never written
        report = compile_in_process(root)
        assert (report["misses"], report["rebuilt"], report["write_errors"]) == (1, 1, 1)
    assert (obj / "keep").read_bytes() == b"not the cache's"
