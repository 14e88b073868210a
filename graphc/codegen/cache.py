"""The kernel cache: compiled object code in memory (the JIT keeps it) and on disk.

A disk entry (``.o``) is keyed by a hash of the module's IR, graphc's version, the LLVM version,
the target (triple, CPU name, features and vector width, as ``GRAPHC_CPU`` and friends may set
them: ``target.current``) and the cache format, so a change to any of them compiles afresh.
The IR text of a program is kept the same way (``.ll``), keyed by what it was emitted from
(``llvm_emit.ProgramEmitter.finish``). An entry lives at ``root/ab/<key>.o`` and is
``MAGIC | length | HMAC-SHA256(secret, file name, payload) | payload``, written to a
temporary file and renamed into place, so two processes writing one entry never leave a
torn file. Nothing is pickled. The cache lives in ``$GRAPHC_CACHE_DIR`` (default
``~/.cache/graphc``); ``GRAPHC_CACHE=0`` turns it off. A read-only or unusable directory
only turns it off for this process.

What it defends against. LLVM trusts what it loads: object code with a section table past
the end of the file ends the process (``LLVM ERROR``), sound object code of another module
crashes it (SIGILL, SIGSEGV), and IR text that parses and verifies can still make the
code generator abort, exit or run for minutes (measured with llvmlite 0.50). So nothing
reaches LLVM that this cache did not write for this key: entries are sealed with a secret
of the cache (``secret.key``, 32 random bytes, mode 0600, made by the first write), which
rejects truncated, torn, bit-flipped and foreign files, files of older graphc versions or
other tools, entries copied from another cache, and files whose plain checksum someone
recomputed. What LLVM reads is checked as well, against graphc's own bugs: an object must
be relocatable ELF for this machine whose sections, symbols and relocations lie inside
the file and which defines the module's functions (``check_object``); a text must define
the program's functions (``check_text``). Only regular files are read (never through a
symbolic link, never a FIFO or a device, at most ``MAX_ENTRY`` bytes), and only real
directories written into: a symbolic link in place of a subdirectory is replaced, not
followed. A rejected entry is compiled again and rewritten (``stats.rebuilt``;
``stats.rejected`` and ``GRAPHC_DEBUG=1`` say why).

What it does not defend against: someone who can write the cache directory as you. They
can read the secret too, and they can already run code as you (``~/.bashrc``). Loading
each new entry once in a subprocess first would not stop them either, and would cost
about 0.2 s (a Python with llvmlite) against the 5-8 ms of a cached compile.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import struct
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from .. import dtype as dt
from ..debug import show
from ..ops.registry import OpDef
from ..symbolic import SymInt
from .emitters import builtin_emitter
from .kernel_ir import Apply, Kernel

FORMAT = 3  # 3: entries sealed with the cache's secret
MAGIC = b"GRAPHC-OBJ\n"
_HEADER = struct.Struct("<Q32s")  # payload length, HMAC of the file name and the payload
MAX_ENTRY = 256 << 20  # bytes of payload: anything longer is not an entry (/dev/zero never ends)
SECRET = "secret.key"
_SECRET_BYTES = 32

_O = {name: getattr(os, name, 0) for name in ("O_NOFOLLOW", "O_NONBLOCK", "O_DIRECTORY", "O_CLOEXEC")}
_DIRECTORY = os.O_RDONLY | _O["O_DIRECTORY"] | _O["O_CLOEXEC"]
_NOFOLLOW = _O["O_NOFOLLOW"]
_READ = os.O_RDONLY | _NOFOLLOW | _O["O_NONBLOCK"] | _O["O_CLOEXEC"]
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _O["O_CLOEXEC"]
# the checks above need openat and O_NOFOLLOW; without them (Windows) there is no disk cache
_SUPPORTED = bool(_NOFOLLOW) and {os.open, os.stat, os.rename, os.link, os.unlink, os.mkdir,
                                   os.rmdir} <= os.supports_dir_fd


class CacheStats:
    """Object code: hits, misses; the programs' IR text: ``text_hits``, ``text_misses``.
    Of either kind: ``rebuilt`` (a bad entry, compiled again), ``write_errors``, and
    ``rejected``, why the last bad entries were refused."""

    def __init__(self):
        self.hits = self.misses = self.rebuilt = self.write_errors = 0
        self.text_hits = self.text_misses = 0
        self.rejected: collections.deque[str] = collections.deque(maxlen=16)

    def __repr__(self) -> str:
        return (f"CacheStats(hits={self.hits}, misses={self.misses}, rebuilt={self.rebuilt}, "
                f"write_errors={self.write_errors}, text_hits={self.text_hits}, "
                f"text_misses={self.text_misses})")


stats = CacheStats()
_lock = threading.Lock()
_pending: dict[str, str] = {}     # module name -> cache key of the module being compiled
_loaded: dict[str, bytes] = {}    # module name -> object code found on disk


def cache_dir() -> Path | None:
    if os.environ.get("GRAPHC_CACHE", "1") == "0" or not _SUPPORTED:
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


# ---- files and directories: regular files in real directories -------------------------------

class Rejected(Exception):
    """Something is where an entry (or the secret) should be, and must not be used; says why."""


_KINDS = {stat.S_IFLNK: "a symbolic link", stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO",
          stat.S_IFCHR: "a device", stat.S_IFBLK: "a device", stat.S_IFSOCK: "a socket"}


def _read_file(dir_fd: int, name: str, limit: int, private: bool = False) -> bytes | None:
    """The bytes of regular file ``name`` in ``dir_fd`` (None if there is nothing there), at
    most ``limit + 1`` of them. ``private``: it must be ours, unreadable by others."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):  # a FIFO blocks the reader, /dev/zero never ends
        raise Rejected(f"{name} is {_KINDS.get(stat.S_IFMT(st.st_mode), 'not a file')}")
    try:
        fd = os.open(name, _READ, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:  # ELOOP: made a link since the stat
        raise Rejected(f"{name}: {e.strerror}") from None
    try:
        st = os.fstat(fd)  # what was opened, not what was looked at
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            raise Rejected(f"{name}: not a regular file of at most {limit} bytes")
        if private and (st.st_uid != os.geteuid() or st.st_mode & 0o077):
            raise Rejected(f"{name}: not private to this user (mode {st.st_mode & 0o777:o})")
        chunks, left = [], st.st_size + 1  # a byte more: a file still growing is no entry yet
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _open_root(stack: contextlib.ExitStack, root: Path, create: bool) -> int | None:
    try:
        fd = os.open(root, _DIRECTORY)  # the root the user named may be a link of theirs
    except FileNotFoundError:
        if not create:
            return None
        os.makedirs(root, mode=0o700, exist_ok=True)
        fd = os.open(root, _DIRECTORY | _NOFOLLOW)  # what was just made, not a link put there
    stack.callback(os.close, fd)
    return fd


def _open_subdir(stack: contextlib.ExitStack, root_fd: int, name: str, create: bool) -> int | None:
    """Subdirectory ``name`` of the root, which must be a real directory: a symbolic link
    there is never followed (writing through it would put files anywhere); ``create``
    replaces it."""
    try:
        fd = os.open(name, _DIRECTORY | _NOFOLLOW, dir_fd=root_fd)
    except FileNotFoundError:
        if not create:
            return None
        fd = None
    except OSError:
        mode = os.stat(name, dir_fd=root_fd, follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):  # a directory we may not open
            raise
        if not create or not stat.S_ISLNK(mode):  # a file there is left alone
            raise Rejected(f"{name}/ is {_KINDS.get(stat.S_IFMT(mode), 'not a directory')}") from None
        os.unlink(name, dir_fd=root_fd)  # the link, not what it points to
        fd = None
    if fd is None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=root_fd)
        fd = os.open(name, _DIRECTORY | _NOFOLLOW, dir_fd=root_fd)
    stack.callback(os.close, fd)
    return fd


def _write_temporary(dir_fd: int, data: bytes, suffix: str) -> str:
    """A new private file holding ``data``, to be renamed or linked into place; its name."""
    name = f".tmp-{secrets.token_hex(8)}{suffix}"
    fd = os.open(name, _CREATE, 0o600, dir_fd=dir_fd)
    try:
        with open(fd, "wb", closefd=False) as f:
            f.write(data)
    except BaseException:  # a full disk leaves no partial file behind
        os.unlink(name, dir_fd=dir_fd)
        raise
    finally:
        os.close(fd)
    return name


def _secret(root_fd: int, create: bool) -> bytes | None:
    """This cache's key, made by the first write (None if there is none and not ``create``).
    Anything else under its name (another size, a link, another owner's file, a file others
    can read) is replaced: the entries sealed with it are then compiled again."""
    for _ in range(3):
        try:
            key = _read_file(root_fd, SECRET, _SECRET_BYTES, private=True)
            if key is not None and len(key) != _SECRET_BYTES:
                raise Rejected(f"{SECRET} has {len(key)} bytes, not {_SECRET_BYTES}")
        except Rejected:
            if not create:
                return None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(SECRET, dir_fd=root_fd)
            continue
        if key is not None or not create:
            return key
        tmp = _write_temporary(root_fd, secrets.token_bytes(_SECRET_BYTES), ".key")
        try:  # a link fails where another process made the secret first; then it is read
            with contextlib.suppress(FileExistsError):
                os.link(tmp, SECRET, src_dir_fd=root_fd, dst_dir_fd=root_fd)
        finally:
            os.unlink(tmp, dir_fd=root_fd)
    raise OSError(f"{SECRET} keeps changing under this process")


# ---- entries ------------------------------------------------------------------------------------

def _seal(secret: bytes, name: str, payload: bytes) -> bytes:
    """HMAC of the entry's file name (its key) and payload: an entry copied under another
    key's name, or not written by this cache, does not match."""
    return hmac.new(secret, name.encode() + b"\0" + payload, hashlib.sha256).digest()


def _load(path: Path, check: Callable[[bytes], str | None] | None) -> bytes | None:
    """The payload of the entry at ``path``: None if there is none; Rejected if what is
    there must not be used (``check`` gives a reason, or None for a sound payload)."""
    head = len(MAGIC) + _HEADER.size
    with contextlib.ExitStack() as stack:
        root_fd = _open_root(stack, path.parent.parent, create=False)
        if root_fd is None:
            return None
        sub_fd = _open_subdir(stack, root_fd, path.parent.name, create=False)
        data = None if sub_fd is None else _read_file(sub_fd, path.name, head + MAX_ENTRY)
        if data is None:
            return None
        secret = _secret(root_fd, create=False)
    if secret is None:
        raise Rejected(f"the cache has no usable {SECRET}: not written by this cache")
    if len(data) < head or not data.startswith(MAGIC):
        raise Rejected("no graphc entry header")
    length, seal = _HEADER.unpack_from(data, len(MAGIC))
    payload = data[head:]
    if len(payload) != length:
        raise Rejected(f"{len(payload)} bytes of payload, the header says {length}")
    if not hmac.compare_digest(_seal(secret, path.name, payload), seal):
        raise Rejected("not sealed by this cache for this key (damaged, or written elsewhere)")
    reason = check(payload) if check is not None else None
    if reason is not None:
        raise Rejected(reason)
    return payload


def read_entry(path: Path, check: Callable[[bytes], str | None] | None = None) -> bytes | None:
    """The payload of a cache file, or None if it is missing, truncated, corrupted, not
    written by this cache, written for another key, or refused by ``check``."""
    try:
        return _load(path, check)
    except (OSError, Rejected):
        return None


def _lookup(path: Path, check: Callable[[bytes], str | None]) -> bytes | None:
    """``read_entry``, counting a bad entry in ``stats.rebuilt`` (its rewrite follows)."""
    try:
        return _load(path, check)
    except OSError:  # an unreadable directory: the cache is off for us
        return None
    except Rejected as e:
        stats.rebuilt += 1
        stats.rejected.append(f"{path.name}: {e}")
        show(1, "disk cache", f"rejected {path}: {e}; compiling it again")
        return None


def write_entry(path: Path, payload: bytes) -> bool:
    """Write atomically (a temporary file renamed into place); False if the disk refused."""
    try:
        with contextlib.ExitStack() as stack:
            root_fd = _open_root(stack, path.parent.parent, create=True)
            sub_fd = _open_subdir(stack, root_fd, path.parent.name, create=True)
            seal = _seal(_secret(root_fd, create=True), path.name, payload)
            tmp = _write_temporary(sub_fd, MAGIC + _HEADER.pack(len(payload), seal) + payload,
                                   path.suffix)
            try:
                try:
                    os.replace(tmp, path.name, src_dir_fd=sub_fd, dst_dir_fd=sub_fd)
                except IsADirectoryError:  # an empty directory in its place goes; a full one stays
                    os.rmdir(path.name, dir_fd=sub_fd)
                    os.replace(tmp, path.name, src_dir_fd=sub_fd, dst_dir_fd=sub_fd)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=sub_fd)
        return True
    except (OSError, Rejected):
        stats.write_errors += 1
        return False


# ---- what LLVM will read ----------------------------------------------------------------------

_ELF = struct.Struct("<16sHHIQQQIHHHHHH")
_SECTION = struct.Struct("<IIQQQQIIQQ")  # name, type, flags, address, offset, size, link, info, ...
_SYMBOL = struct.Struct("<IBBHQQ")       # name, info, other, section, value, size
_RELOCATION = {4: struct.Struct("<QQq"), 9: struct.Struct("<QQ")}  # SHT_RELA, SHT_REL: offset, info
SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS = 2, 3, 8
SHN_ABS, SHN_COMMON = 0xFFF1, 0xFFF2
_ELF_MACHINES = {"x86_64": 62, "aarch64": 183, "powerpc64le": 21, "ppc64le": 21, "riscv64": 243}
# the bytes each x86-64 relocation type writes (psABI), for the types LLVM's loader applies
_X86_64_WIDTH = {0: 0, 14: 1, 15: 1, 12: 2, 13: 2,
                 **dict.fromkeys((2, 4, 9, 10, 11, 19, 20, 21, 22, 23, 26, 41, 42), 4),
                 **dict.fromkeys((1, 16, 17, 18, 24, 25, 27, 28, 29, 31), 8)}


@functools.cache
def _elf_machine() -> int | None:
    """The ELF machine of this host's object code; None where it is not 64-bit
    little-endian ELF (macOS, Windows, 32-bit hosts), where only the seal vouches."""
    from .target import host_description

    arch, _, system = host_description()["triple"].partition("-")
    if any(word in system for word in ("darwin", "macos", "windows", "ios")):
        return None
    return _ELF_MACHINES.get(arch)


def check_object(data: bytes, functions: Iterable[str] = ()) -> str | None:
    """Why ``data`` must not be loaded as this host's object code, or None if it may: a
    64-bit little-endian relocatable ELF file for this machine whose sections, symbols and
    relocations lie inside it, and which defines ``functions``. LLVM's loader trusts every
    offset and index in it; one out of range ends the process."""
    machine = _elf_machine()
    if machine is None:
        return None
    try:
        sections = _elf_sections(data, machine)
        counts, defined = _elf_symbols(data, sections)
        _elf_relocations(data, sections, counts, _X86_64_WIDTH if machine == 62 else None)
    except Rejected as e:
        return str(e)
    missing = sorted(f for f in functions if f.encode() not in defined)
    return f"does not define {', '.join(missing)} (another module's code?)" if missing else None


def _elf_sections(data: bytes, machine: int) -> list[tuple]:
    """The section headers, each section inside the file."""
    if len(data) < _ELF.size:
        raise Rejected(f"{len(data)} bytes: shorter than an ELF header")
    (ident, kind, e_machine, version, _, _, shoff, _, ehsize, _, phnum, shentsize, shnum,
     shstrndx) = _ELF.unpack_from(data)
    if ident[:7] != b"\x7fELF\x02\x01\x01":
        raise Rejected("not a 64-bit little-endian ELF file")
    if (kind, e_machine, version) != (1, machine, 1):
        raise Rejected(f"ELF type {kind} for machine {e_machine}: not relocatable code for {machine}")
    if (ehsize, shentsize, phnum) != (_ELF.size, _SECTION.size, 0) or not 0 < shstrndx < shnum:
        raise Rejected("an ELF header with unexpected sizes or counts")
    if shoff < _ELF.size or shoff + shnum * _SECTION.size > len(data):
        raise Rejected("the section header table goes past the end of the file")
    sections = list(_SECTION.iter_unpack(data[shoff:shoff + shnum * _SECTION.size]))
    for i, (_, kind, _, _, offset, size, link, _, align, _) in enumerate(sections):
        if kind != SHT_NOBITS and offset + size > len(data):
            raise Rejected(f"section {i} goes past the end of the file")
        if link >= shnum or align & (align - 1):
            raise Rejected(f"section {i} links to no section, or has an alignment of {align}")
    names = _string_table(data, sections, shstrndx)
    if any(s[0] >= names[1] for s in sections):
        raise Rejected("a section name outside the section name table")
    return sections


def _string_table(data: bytes, sections: list[tuple], i: int) -> tuple[int, int]:
    """Offset and size of string table ``i``; its last string ends inside it."""
    _, kind, _, _, offset, size, *_ = sections[i]
    if kind != SHT_STRTAB or not size or data[offset + size - 1] != 0:
        raise Rejected(f"section {i} is not a string table")
    return offset, size


def _elf_symbols(data: bytes, sections: list[tuple]) -> tuple[dict[int, int], set[bytes]]:
    """The number of symbols of each symbol table, and the global functions defined; each
    symbol's name inside its string table and its extent inside its section."""
    counts, defined = {}, set()
    for i, (_, kind, _, _, offset, size, link, _, _, entsize) in enumerate(sections):
        if kind != SHT_SYMTAB:
            continue
        if entsize != _SYMBOL.size or size % entsize:
            raise Rejected(f"symbol table {i} has entries of {entsize} bytes")
        strings, limit = _string_table(data, sections, link)
        symbols = list(_SYMBOL.iter_unpack(data[offset:offset + size]))
        for name, info, _, section, value, extent in symbols:
            if name >= limit:
                raise Rejected(f"symbol table {i}: a name outside its string table")
            if 0 < section < len(sections):
                if value + extent > sections[section][5]:
                    raise Rejected(f"symbol table {i}: a symbol past the end of section {section}")
                if info & 0xF == 2 and info >> 4:  # a global or weak function
                    defined.add(data[strings + name:data.index(b"\0", strings + name)])
            elif section not in (0, SHN_ABS, SHN_COMMON):
                raise Rejected(f"symbol table {i}: a symbol in section {section}, which is not there")
        counts[i] = len(symbols)
    return counts, defined


def _elf_relocations(data: bytes, sections: list[tuple], counts: dict[int, int],
                     widths: dict[int, int] | None) -> None:
    """Each relocation names a symbol that is there and, by the bytes its type writes
    (``widths``; where unknown, one), lies inside the section it patches."""
    for i, (_, kind, _, _, offset, size, link, target, _, entsize) in enumerate(sections):
        if kind not in _RELOCATION:
            continue
        if entsize != _RELOCATION[kind].size or size % entsize or link not in counts:
            raise Rejected(f"relocation section {i} is malformed")
        if not 0 < target < len(sections):
            raise Rejected(f"relocation section {i} patches section {target}, which is not there")
        room = sections[target][5]
        for place, info, *_ in _RELOCATION[kind].iter_unpack(data[offset:offset + size]):
            width = 1 if widths is None else widths.get(info & 0xFFFFFFFF)
            if width is None:
                raise Rejected(f"relocation section {i}: type {info & 0xFFFFFFFF}, which LLVM does not apply")
            if info >> 32 >= counts[link] or place + width > room:
                raise Rejected(f"relocation section {i}: a relocation outside section {target} "
                               "or of a symbol that is not there")


_DEFINE = re.compile(r'\ndefine [^\n@]*@"?([^"(\s]+)')


def check_text(data: bytes, functions: Iterable[str]) -> str | None:
    """Why ``data`` is not the LLVM IR text of a program defining ``functions``, or None.
    It is not parsed here: text that parses can still crash LLVM, so the seal is what keeps
    foreign text out; this catches a text kept under the wrong key."""
    try:
        defined = set(_DEFINE.findall(data.decode()))
    except UnicodeDecodeError:
        return "not UTF-8 text"
    missing = sorted(set(functions) - defined)
    return f"does not define {', '.join(missing)} (another program's text?)" if missing else None


# ---- the JIT's object cache and the programs' text ---------------------------------------------

def lookup_object(source: str, module_name: str, functions: Iterable[str] = (),
                  read: bool = True) -> bool:
    """Register a module about to be compiled; True if its object code is on disk and
    defines ``functions`` (and ``read``: otherwise it is compiled, and its entry written,
    whatever is on disk)."""
    key = cache_key(source)
    functions = list(functions)
    with _lock:
        _pending[module_name] = key
        path = _path(key)
        if path is None or not read:
            return False
        payload = _lookup(path, lambda data: check_object(data, functions))
        if payload is None:
            stats.misses += 1
            return False
        stats.hits += 1
        _loaded[module_name] = payload
        return True


def read_text(key: str, functions: Iterable[str]) -> str | None:
    """A program's LLVM IR text kept under ``key`` (see ``ProgramEmitter.finish``) that
    defines ``functions``, or None."""
    path = _path(key, ".ll")
    if path is None:
        return None
    functions = list(functions)
    payload = _lookup(path, lambda data: check_text(data, functions))
    with _lock:
        if payload is None:
            stats.text_misses += 1
        else:
            stats.text_hits += 1
    return None if payload is None else payload.decode()


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


# ---- the key of a program's text: its kernels spelled out, and the emitter's code -------------

def fingerprint(kernel: Kernel, sites: dict) -> str:
    """Every attribute of ``kernel``'s IR, spelled out: two kernels with the same fingerprint
    emit the same LLVM IR. Shared objects (a sub-expression used twice, a loop variable)
    are spelled once and then referred to by number, since the emitter treats shared and
    equal-but-separate objects differently. Raises TypeError on a value it cannot spell,
    and on an op whose emitter is not graphc's own (one patched or registered at run
    time is not in ``codegen_digest``)."""
    out: list[str] = []
    ids: dict[int, int] = {}

    def walk(x) -> None:
        t = type(x)
        if t in _ATOMS:
            out.append(f"{t.__name__}:{x!r}")
        elif t is SymInt:  # as emitted: symbols a guard pinned are their values
            v = x.simplified()
            out.append(f"sym:{v}" if type(v) is SymInt else f"int:{v!r}")
        elif t is tuple or t is list:
            out.append("[" if t is list else "(")
            for v in x:
                walk(v)
                out.append(",")
            out.append("]" if t is list else ")")
        elif isinstance(x, dt.dtype):
            out.append(f"dtype:{x}")
        elif isinstance(x, OpDef):
            if x.emit is not builtin_emitter(x):  # replaced or added at run time: the
                raise TypeError(f"{x.name} has an emitter of its own")  # digest cannot see it
            out.append(f"op:{x.name}")
        elif _dataclass_kind(t):
            if _dataclass_kind(t) == "shared":
                if id(x) in ids:
                    out.append(f"#{ids[id(x)]}")
                    return
                ids[id(x)] = len(ids)
            out.append(t.__name__ + "(")
            for name, value in sorted(vars(x).items()):  # fields and any attribute set later
                out.append(name + "=")
                walk(value)
                out.append(",")
            if t is Apply:
                out.append(f"site={sites.get(id(x), 0)}")
            out.append(")")
        elif t is dict:
            out.append("{")
            for k in sorted(x, key=repr):
                out.append(repr(k) + ":")
                walk(x[k])
                out.append(",")
            out.append("}")
        else:
            raise TypeError(f"cannot fingerprint {t.__name__}")
    walk(kernel)
    return "".join(out)


_ATOMS = frozenset({int, float, str, bool, type(None)})


@functools.cache
def _dataclass_kind(t: type) -> str:
    """"frozen" (a value: spelled each time), "shared" (identity matters), or ""."""
    if not dataclasses.is_dataclass(t):
        return ""
    return "frozen" if t.__dataclass_params__.frozen else "shared"


@functools.cache
def codegen_digest() -> str:
    """sha256 of the code that turns kernel IR into LLVM IR (this package, and the dtypes
    and op table it reads), so a changed emitter never meets an old text."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    ops = root.parent / "ops"  # the declarations, which hold the emitters
    for path in sorted(root.glob("*.py")) + [root.parent / "dtype.py"] + sorted(ops.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
