"""The kernel cache: compiled object code in memory (the JIT keeps it) and on disk.

A disk entry (``.o``) is keyed by a hash of the module's IR, graphc's version, the LLVM version,
the CPU name and features (and the cache format), so a change to any of them compiles
afresh. An entry is ``MAGIC | length | sha256(key, object) | object``: a truncated or
corrupted file fails the check and is rebuilt, and so does a sound entry under another
key's name (its code defines another module's symbols; calling it would crash). Entries
are written to a temporary file and renamed into place, so two processes writing the
same entry never leave a torn file. The IR text of a program is kept the same way
(``.ll``), keyed by what it was emitted from (``llvm_emit.ProgramEmitter.finish``).
Nothing is pickled. The cache lives in ``$GRAPHC_CACHE_DIR`` (default
``~/.cache/graphc``); ``GRAPHC_CACHE=0`` turns the disk cache off. A read-only or
unusable directory only turns it off for this process.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import threading
from pathlib import Path

FORMAT = 2
MAGIC = b"GRAPHC-OBJ\n"
_HEADER = struct.Struct("<Q32s")  # payload length, digest of the key and the payload


class CacheStats:
    """Object code: hits, misses, rebuilt (a bad entry), write errors; and the programs'
    IR text (``text_hits``, ``text_misses``)."""

    def __init__(self):
        self.hits = self.misses = self.rebuilt = self.write_errors = 0
        self.text_hits = self.text_misses = 0

    def __repr__(self) -> str:
        return (f"CacheStats(hits={self.hits}, misses={self.misses}, rebuilt={self.rebuilt}, "
                f"write_errors={self.write_errors}, text_hits={self.text_hits}, "
                f"text_misses={self.text_misses})")


stats = CacheStats()
_lock = threading.Lock()
_pending: dict[str, str] = {}     # module name -> cache key of the module being compiled
_loaded: dict[str, bytes] = {}    # module name -> object code found on disk


def cache_dir() -> Path | None:
    if os.environ.get("GRAPHC_CACHE", "1") == "0":
        return None
    root = os.environ.get("GRAPHC_CACHE_DIR")
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "graphc")
    return Path(root)


def cache_key(source: str) -> str:
    from .. import __version__
    from .target import host_description

    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "graphc": __version__, **host_description()},
                        sort_keys=True).encode())
    h.update(source.encode())
    return h.hexdigest()


def _path(key: str, suffix: str = ".o") -> Path | None:
    root = cache_dir()
    return None if root is None else root / key[:2] / f"{key}{suffix}"


def _digest(path: Path, payload: bytes) -> bytes:
    """sha256 of the entry's key (its file name) and its object code."""
    return hashlib.sha256(path.stem.encode() + b"\0" + payload).digest()


def read_entry(path: Path) -> bytes | None:
    """The object code in a cache file, or None if it is missing, truncated, corrupted or
    written for another key."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(MAGIC) + _HEADER.size
    if len(data) < head or not data.startswith(MAGIC):
        return None
    length, digest = _HEADER.unpack_from(data, len(MAGIC))
    payload = data[head:]
    if len(payload) != length or _digest(path, payload) != digest:
        return None
    return payload


def write_entry(path: Path, payload: bytes) -> bool:
    """Write atomically (a temporary file renamed into place); False if the disk refused."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".o")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + _HEADER.pack(len(payload), _digest(path, payload)) + payload)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return True
    except OSError:
        stats.write_errors += 1
        return False


def lookup_object(source: str, module_name: str, read: bool = True) -> bool:
    """Register a module about to be compiled; True if its object code is on disk (and
    ``read``: otherwise it is compiled, and its entry written, whatever is on disk)."""
    key = cache_key(source)
    with _lock:
        _pending[module_name] = key
        path = _path(key)
        if path is None or not read:
            return False
        payload = read_entry(path)
        if payload is None:
            if path.exists():
                stats.rebuilt += 1
            stats.misses += 1
            return False
        stats.hits += 1
        _loaded[module_name] = payload
        return True


def read_text(key: str) -> str | None:
    """A program's LLVM IR text kept under ``key`` (see ``ProgramEmitter.finish``), or None."""
    path = _path(key, ".ll")
    if path is None:
        return None
    payload = read_entry(path)
    try:
        text = None if payload is None else payload.decode()
    except UnicodeDecodeError:
        text = None
    with _lock:
        if text is None:
            stats.text_misses += 1
        else:
            stats.text_hits += 1
    return text


def write_text(key: str, text: str) -> None:
    path = _path(key, ".ll")
    if path is not None:
        write_entry(path, text.encode())


def forget(module_name: str) -> None:
    with _lock:
        _pending.pop(module_name, None)
        _loaded.pop(module_name, None)


def install_object_cache(engine) -> None:
    """Let the JIT load object code from the disk cache and save what it compiles."""
    def notify(module, buffer: bytes) -> None:
        with _lock:
            key = _pending.pop(module.name, None)
            if key is None or module.name in _loaded:
                _loaded.pop(module.name, None)
                return
            path = _path(key)
        if path is not None:
            write_entry(path, buffer)

    def getbuffer(module) -> bytes | None:
        with _lock:
            return _loaded.get(module.name)

    engine.set_object_cache(notify, getbuffer)
