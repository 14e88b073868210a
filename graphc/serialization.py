"""``graphc.save`` / ``graphc.load``: tensors and state dicts in a safe file format (never pickle).

A file is a zip archive with uncompressed entries:

    metadata.json   {"format": "graphc", "version": 1, "storages": [...], "tensors": [...], "root": node}
    data/0, data/1  the raw little-endian bytes of each distinct storage, in storage order

A tensor is a reference to a storage plus its geometry (shape, stride in elements, storage
offset), so views saved together share one storage after loading, as in PyTorch. The object
tree is JSON in which every value is a tagged node, e.g. ``{"type": "float", "value": "0x1.8p+1"}``
(floats as ``float.hex`` so nan, inf and -0.0 come back bit for bit).

Loading parses JSON and copies bytes into numpy arrays; it never unpickles and never runs
code. Everything in the file is checked before it is used: entry names, sizes against the
bytes the archive really holds (before reading), JSON shape, dtypes, and that every tensor
stays inside its storage. Anything else is refused with a ``SerializationError``.

Loading reads at most the file's own bytes: entries may not overlap (a small archive whose
entries share bytes would load as many times its size), reads stop at the size the file had
when loading began, and a path must name a regular file (``/dev/zero`` and a FIFO are
refused before reading). A file object that cannot seek is read up to ``MAX_STREAM_BYTES``.

    >>> graphc.save({"w": w, "step": 3}, "ckpt.gc")
    >>> graphc.load("ckpt.gc")["step"]
    3
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
import reprlib
import stat
import struct
import zipfile
from collections import OrderedDict
from typing import IO, Any, NoReturn

import numpy as np

from . import dtype as dt
from .layout import reach
from .tensor import Storage, Tensor, device

FORMAT, VERSION = "graphc", 1
METADATA = "metadata.json"
MAX_DEPTH = 128                      # nesting of the object tree (a cycle stops here on save)
MAX_METADATA_BYTES = 64 * 2**20
MAX_NDIM = 64                        # numpy's limit
MAX_STREAM_BYTES = 2**32             # a file object that cannot seek is buffered in memory, up to this
_MAX_BYTES = 2**62                   # any extent (elements × itemsize) a numpy view can address
_CHUNK = 2**20
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, struct.error,
               NotImplementedError)
_PICKLE = ("this looks like a PyTorch/pickle file; graphc never unpickles (in PyTorch, load it with "
           "torch.load(f, weights_only=True) and convert tensors with graphc.from_numpy(t.numpy()))")
_DTYPES = {d.name: d for d in dt.STORAGE_DTYPES}
_FILE_KINDS = {"d": "directory", "c": "character device", "b": "block device", "p": "FIFO (named pipe)",
               "s": "socket"}

# node type -> its fields and their JSON types (besides "type")
_NODES: dict[str, dict[str, type]] = {
    "none": {}, "bool": {"value": bool}, "int": {"value": int}, "float": {"value": str},
    "str": {"value": str}, "bytes": {"value": str}, "dtype": {"name": str}, "tensor": {"index": int},
    "list": {"items": list}, "tuple": {"items": list},
    "dict": {"items": list}, "ordered_dict": {"items": list},
}
_KEY_NODES = ("none", "bool", "int", "float", "str", "tuple")
_TOP = {"format": str, "version": int, "storages": list, "tensors": list, "root": dict}
_STORAGE = {"dtype": str, "numel": int}
_TENSOR = {"storage": int, "dtype": str, "shape": list, "stride": list, "offset": int,
           "requires_grad": bool, "parameter": bool}
_JSON_KINDS = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number",
               bool: "a boolean", type(None): "null"}


class SerializationError(ValueError):
    """A file ``load`` refuses (malformed, hostile or not graphc's), or a tensor ``save`` cannot save."""


# ---- save ---------------------------------------------------------------------------------------
def save(obj: Any, f: str | os.PathLike | IO[bytes]) -> None:
    """Save ``obj`` to ``f`` (a path or a binary file object) without pickle.

    ``obj`` may nest dicts (OrderedDict stays OrderedDict), lists, tuples, str, int, float,
    bool, None, bytes, graphc dtypes and tensors: a module's or optimizer's ``state_dict()``.
    Dict keys may be str, int, float, bool, None or tuples of those. Tensors keep dtype,
    geometry and ``requires_grad``; tensors sharing a storage share it again after ``load``.

        >>> graphc.save({"a": x, "b": x.T}, "pair.gc")
    """
    writer = _Writer()
    root = writer.node(obj, "obj", 0)  # walk first: a failure leaves no half-written file
    meta = {"format": FORMAT, "version": VERSION, "storages": writer.storage_specs,
            "tensors": writer.tensors, "root": root}
    payload = json.dumps(meta, allow_nan=False, separators=(",", ":")).encode()
    if isinstance(f, (str, os.PathLike)):
        with open(f, "wb") as fp:
            _write(fp, payload, writer.storages)
    elif hasattr(f, "write"):
        _write(f, payload, writer.storages)
    else:
        raise TypeError(f"save: expected a path or a binary file object, got {type(f).__name__}")


def _write(fp: IO[bytes], payload: bytes, storages: list[Storage]) -> None:
    with zipfile.ZipFile(fp, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(_entry_info(METADATA), payload)
        for i, st in enumerate(storages):
            arr = np.ascontiguousarray(st.array.astype(st.array.dtype.newbyteorder("<"), copy=False))
            zf.writestr(_entry_info(f"data/{i}"), memoryview(arr.view(np.uint8)))


def _entry_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: same object, same bytes
    info.external_attr = 0o644 << 16
    return info


class _Writer:
    """Turns an object tree into JSON nodes, numbering distinct tensors and storages."""

    def __init__(self):
        self.storages: list[Storage] = []
        self.storage_specs: list[dict] = []
        self.tensors: list[dict] = []
        self._storage_ids: dict[int, int] = {}
        self._tensor_ids: dict[int, int] = {}

    def node(self, obj: Any, where: str, depth: int, key: bool = False) -> dict:
        if depth > MAX_DEPTH:
            raise SerializationError(f"save: {where} is nested more than {MAX_DEPTH} levels deep "
                                     "(does the object contain itself?)")
        t = type(obj)
        if obj is None:
            return {"type": "none"}
        if t in (bool, int, str):
            return {"type": t.__name__, "value": obj}
        if t is float:
            return {"type": "float", "value": obj.hex()}
        if t in (list, tuple) and not (key and t is list):
            return {"type": t.__name__, "items": [self.node(x, f"{where}[{i}]", depth + 1, key)
                                                  for i, x in enumerate(obj)]}
        if not key:
            if t is bytes:
                return {"type": "bytes", "value": base64.b64encode(obj).decode("ascii")}
            if t in (dict, OrderedDict):
                items = [[self.node(k, f"{where} key {k!r}", depth + 1, key=True),
                          self.node(v, f"{where}[{k!r}]", depth + 1)] for k, v in obj.items()]
                return {"type": "dict" if t is dict else "ordered_dict", "items": items}
            if isinstance(obj, dt.dtype):
                return {"type": "dtype", "name": obj.name}
            if isinstance(obj, Tensor):
                return {"type": "tensor", "index": self.tensor(obj, where)}
        hint = ""
        if isinstance(obj, np.generic):
            hint = " (convert it with .item())"
        elif isinstance(obj, np.ndarray):
            hint = " (wrap it with graphc.from_numpy)"
        if key:
            raise TypeError(f"save: {where} is a {t.__qualname__}; dict keys must be str, int, float, "
                            f"bool, None or tuples of those{hint}")
        raise TypeError(f"save: {where} is a {t.__module__}.{t.__qualname__}, which graphc.save cannot "
                        "save; expected a Tensor, dtype, dict, OrderedDict, list, tuple, str, int, float, "
                        f"bool, None or bytes{hint}")

    def tensor(self, t: Tensor, where: str) -> int:
        if id(t) in self._tensor_ids:  # the same tensor twice is one tensor after load
            return self._tensor_ids[id(t)]
        st = t._storage
        if st.array is None:
            raise SerializationError(f"save: {where} is a meta tensor (shape {tuple(t._shape)}, "
                                     f"{t.dtype.name}): it has no data to save")
        if id(st) not in self._storage_ids:
            self._storage_ids[id(st)] = len(self.storages)
            self.storages.append(st)
            self.storage_specs.append({"dtype": st.dtype.name, "numel": int(st.array.shape[0])})
        self.tensors.append({
            "storage": self._storage_ids[id(st)], "dtype": st.dtype.name, "shape": list(t._shape),
            "stride": list(t._stride), "offset": t._offset, "requires_grad": bool(t.requires_grad),
            "parameter": type(t).__name__ == "Parameter"})
        self._tensor_ids[id(t)] = len(self.tensors) - 1
        return self._tensor_ids[id(t)]


# ---- load ---------------------------------------------------------------------------------------
def load(f: str | os.PathLike | IO[bytes], map_location: Any = None, weights_only: bool = True) -> Any:
    """Load what ``graphc.save`` wrote to ``f`` (a path or a binary file object).

    Never unpickles and never runs code (``weights_only`` is accepted for PyTorch
    compatibility; loading is always weights-only). ``map_location`` may be None or "cpu".
    Raises ``SerializationError`` for anything that is not a well-formed graphc file,
    including PyTorch's pickle-based files.
    """
    if map_location is not None and not (isinstance(map_location, (str, device)) and
                                         str(map_location).split(":")[0] == "cpu"):
        raise SerializationError(f"load: map_location={map_location!r} is not supported; graphc loads "
                                 "tensors to the cpu (pass None or 'cpu')")
    if isinstance(f, (str, os.PathLike)):
        reader = _Reader(repr(os.fspath(f)))
        with reader.open(f) as fp:
            return reader.load(fp)
    if not hasattr(f, "read"):
        raise TypeError(f"load: expected a path or a binary file object, got {type(f).__name__}"
                        + (" (wrap bytes in io.BytesIO)" if isinstance(f, (bytes, bytearray)) else ""))
    name = getattr(f, "name", None)
    return _Reader(repr(name) if isinstance(name, str) else "<file object>").load(f)


class _Reader:
    """Checks and loads one archive; ``src`` names it in every error."""

    def __init__(self, src: str):
        self.src = src
        self.size = 0  # bytes in the whole file: no entry may claim more
        self.tensors: list[Tensor] = []

    def fail(self, message: str) -> NoReturn:
        raise SerializationError(f"load: {self.src}: {message}")

    def open(self, path: str | os.PathLike) -> IO[bytes]:
        """Open ``path`` if it is a regular file. Devices and FIFOs are refused before they are
        opened (/dev/zero never ends; opening a FIFO waits for a writer); the opened descriptor is
        checked again, with O_NONBLOCK so that a FIFO swapped in meanwhile cannot block the open."""
        self.check_regular(os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        try:
            self.check_regular(os.fstat(fd).st_mode)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def check_regular(self, mode: int) -> None:
        if not stat.S_ISREG(mode):
            kind = _FILE_KINDS.get(stat.filemode(mode)[0], "special file")
            self.fail(f"is a {kind}, not a regular file; graphc loads regular files (to read a stream, "
                      "pass an open binary file object)")

    def read_stream(self, fp: IO[bytes]) -> io.BytesIO:
        out = io.BytesIO()
        while chunk := fp.read(min(_CHUNK, MAX_STREAM_BYTES + 1 - out.tell())):
            out.write(chunk)
            if out.tell() > MAX_STREAM_BYTES:
                self.fail(f"the stream goes on past {MAX_STREAM_BYTES} bytes, the limit for a file object "
                          "that cannot seek (pass a path or a seekable file, or raise "
                          "graphc.serialization.MAX_STREAM_BYTES)")
        out.seek(0)
        return out

    def load(self, fp: IO[bytes]) -> Any:
        if not getattr(fp, "seekable", lambda: False)():  # zipfile reads the directory at the end first
            fp = self.read_stream(fp)
        start = fp.tell()
        self.size = fp.seek(0, os.SEEK_END)
        fp.seek(start)
        head = fp.read(1)
        fp.seek(start)
        fp = _Window(fp, self.size)
        try:
            zf = zipfile.ZipFile(fp)
        except _ZIP_ERRORS as e:
            if head == b"\x80":
                self.fail(f"not a zip archive: {_PICKLE}")
            self.fail(f"not a graphc file: not a zip archive, or a truncated one ({e})")
        with zf:
            infos = {}
            for info in zf.infolist():
                self.check_name(info.filename, infos)
                infos[info.filename] = info
            pickles = [n for n in infos if n.endswith(".pkl")]
            if pickles:
                self.fail(f"entry {pickles[0]!r}: {_PICKLE}")
            for info in infos.values():
                self.check_size(info)
            self.check_extents(fp, infos)
            if METADATA not in infos:
                found = ", ".join(repr(n) for n in list(infos)[:5]) or "none"
                self.fail(f"no {METADATA!r} entry, so this is not a graphc file (entries: {found})")
            meta = self.metadata(zf, infos[METADATA])
            storage_specs, tensor_specs, root = (meta[k] for k in ("storages", "tensors", "root"))
            expected = {METADATA} | {f"data/{i}" for i in range(len(storage_specs))}
            for name in sorted(infos.keys() - expected):
                first = bytearray(min(1, infos[name].file_size))
                self.read_into(zf, infos[name], memoryview(first))
                if first == b"\x80":
                    self.fail(f"entry {name!r}: {_PICKLE}")
                self.fail(f"unexpected entry {name!r} (expected only {METADATA!r} and one data/<i> "
                          f"for each of the {len(storage_specs)} storages)")
            storages = [self.storage(zf, infos, spec, i) for i, spec in enumerate(storage_specs)]
        self.tensors = [self.tensor(spec, i, storages) for i, spec in enumerate(tensor_specs)]
        return self.node(root, "root", 0)

    def check_name(self, name: str, seen: dict) -> None:
        parts = name.replace("\\", "/").split("/")
        if (name.startswith(("/", "\\")) or "\\" in name or ":" in parts[0] or "\0" in name
                or any(p in ("", ".", "..") for p in parts)):
            self.fail(f"entry name {name!r} is not a plain relative path (it is absolute, or has '..', "
                      "'.', empty parts or backslashes); refusing a hostile archive")
        if name in seen:
            self.fail(f"entry {name!r} appears twice; refusing an ambiguous archive")

    def check_size(self, info: zipfile.ZipInfo) -> None:
        name = info.filename
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            self.fail(f"entry {name!r} is compressed or encrypted (method {info.compress_type}); "
                      "graphc files store entries uncompressed")
        if info.file_size != info.compress_size:
            self.fail(f"entry {name!r} is stored but declares {info.file_size} bytes of data in "
                      f"{info.compress_size} stored bytes")

    def check_extents(self, fp: IO[bytes], infos: dict[str, zipfile.ZipInfo]) -> None:
        """Each entry (local header, name, extra field, data) lies inside the file and shares no byte
        with another, so reading every entry reads at most the file's size. The central directory
        alone cannot promise that: its entries may all point at the same bytes."""
        extents = []
        for name, info in infos.items():
            header = b""
            if info.header_offset >= 0:  # a central directory at a wrong offset can place it before 0
                fp.seek(info.header_offset)
                header = fp.read(zipfile.sizeFileHeader)
            if len(header) != zipfile.sizeFileHeader or header[:4] != zipfile.stringFileHeader:
                self.fail(f"entry {name!r} has no local header at offset {info.header_offset} "
                          "(truncated or hostile archive)")
            name_size, extra_size = struct.unpack("<2H", header[-4:])
            end = info.header_offset + len(header) + name_size + extra_size + info.compress_size
            if end > self.size:
                self.fail(f"entry {name!r} declares {info.file_size} bytes but the file holds only "
                          f"{self.size} bytes in all (truncated or hostile archive)")
            extents.append((info.header_offset, end, name))
        extents.sort()
        for (_, end, first), (start, _, second) in zip(extents, extents[1:]):
            if start < end:
                self.fail(f"entries {first!r} and {second!r} overlap (bytes {start}..{end - 1} belong to "
                          "both); refusing a hostile archive")

    def read_into(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: memoryview) -> None:
        try:
            with zf.open(info) as fp:
                pos = 0
                while pos < len(out):
                    chunk = fp.read(min(_CHUNK, len(out) - pos))
                    if not chunk:
                        self.fail(f"entry {info.filename!r} ends after {pos} of {len(out)} bytes")
                    out[pos:pos + len(chunk)] = chunk
                    pos += len(chunk)
        except SerializationError:
            raise
        except _ZIP_ERRORS as e:
            self.fail(f"entry {info.filename!r} is corrupt: {e}")

    def metadata(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict:
        if info.file_size > MAX_METADATA_BYTES:
            self.fail(f"{METADATA!r} is {info.file_size} bytes; the limit is {MAX_METADATA_BYTES}")
        raw = bytearray(info.file_size)
        self.read_into(zf, info, memoryview(raw))
        if raw[:1] == b"\x80":
            self.fail(f"entry {METADATA!r}: {_PICKLE}")
        try:
            meta = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys,
                              parse_constant=_no_constant)
        except RecursionError:
            self.fail(f"{METADATA!r} is nested too deeply")
        except ValueError as e:
            self.fail(f"{METADATA!r} is not valid UTF-8 JSON: {e}")
        self.fields(meta, _TOP, METADATA)
        if meta["format"] != FORMAT:
            self.fail(f"{METADATA!r} has format {meta['format']!r}, expected {FORMAT!r}")
        if meta["version"] != VERSION:
            self.fail(f"format version {meta['version']} is not supported (this graphc reads version "
                      f"{VERSION}; a newer graphc may have written it)")
        return meta

    def fields(self, obj: Any, spec: dict[str, type], where: str) -> dict:
        if type(obj) is not dict:
            self.fail(f"{where} should be a JSON object, found {_kind(obj)}")
        missing, extra = spec.keys() - obj.keys(), obj.keys() - spec.keys()
        if missing or extra:
            self.fail(f"{where} should have fields {sorted(spec)}; "
                      + (f"missing {sorted(missing)}" if missing else f"unknown {sorted(extra)}"))
        for name, kind in spec.items():
            if type(obj[name]) is not kind:
                self.fail(f"{where} field {name!r} should be {_JSON_KINDS[kind]}, found {_kind(obj[name])}")
        return obj

    def dtype(self, name: str, where: str) -> dt.dtype:
        if name not in _DTYPES:
            self.fail(f"{where} has unknown dtype {name!r} (expected one of {', '.join(_DTYPES)})")
        return _DTYPES[name]

    def storage(self, zf: zipfile.ZipFile, infos: dict, spec: Any, i: int) -> Storage:
        where, entry = f"storage {i}", f"data/{i}"
        self.fields(spec, _STORAGE, where)
        d, numel = self.dtype(spec["dtype"], where), spec["numel"]
        if numel < 0:
            self.fail(f"{where} has negative size {numel}")
        if entry not in infos:
            self.fail(f"{where} has no entry {entry!r}")
        nbytes, found = numel * d.itemsize, infos[entry].file_size
        if found != nbytes:  # checked before reading: a huge declared size allocates nothing
            self.fail(f"{where} (entry {entry!r}) declares {numel} {d.name} elements ({nbytes} bytes) "
                      f"but the entry holds {found} bytes")
        arr = np.empty(numel, d.np.newbyteorder("<"))
        self.read_into(zf, infos[entry], memoryview(arr.view(np.uint8)))
        if d is dt.bool_ and numel and arr.view(np.uint8).max() > 1:
            self.fail(f"{where} is bool but holds bytes other than 0 and 1")
        return Storage.from_array(arr.astype(d.np, copy=False))

    def tensor(self, spec: Any, i: int, storages: list[Storage]) -> Tensor:
        where = f"tensor {i}"
        self.fields(spec, _TENSOR, where)
        shape, stride, offset = spec["shape"], spec["stride"], spec["offset"]
        if not 0 <= spec["storage"] < len(storages):
            self.fail(f"{where} refers to storage {spec['storage']}, but there are {len(storages)}")
        st = storages[spec["storage"]]
        if self.dtype(spec["dtype"], where) is not st.dtype:
            self.fail(f"{where} is {spec['dtype']} but its storage holds {st.dtype.name}")
        if any(type(x) is not int for x in shape + stride) or len(shape) != len(stride):
            self.fail(f"{where} shape {_short(shape)} and stride {_short(stride)} should be lists of "
                      "integers of the same length")
        if len(shape) > MAX_NDIM or min(shape, default=0) < 0 or offset < 0:
            self.fail(f"{where} has shape {shape} and offset {offset}: sizes and offset must be "
                      f"non-negative, at most {MAX_NDIM} dims")
        item = st.dtype.itemsize
        if (math.prod(max(n, 1) for n in shape) * item > _MAX_BYTES or offset * item > _MAX_BYTES
                or any(abs(s) * item > _MAX_BYTES for s in stride)):
            self.fail(f"{where} shape {shape}, stride {stride}, offset {offset} are too large to address")
        if 0 not in shape:  # an empty tensor reads nothing, so it may sit anywhere (as in PyTorch)
            lo, hi = (offset + e for e in reach(shape, stride))
            if lo < 0 or hi >= st.size:
                self.fail(f"{where} (shape {shape}, stride {stride}, offset {offset}) reaches elements "
                          f"{lo}..{hi}, outside its storage of {st.size} elements")
        if spec["requires_grad"] and not st.dtype.is_floating_point:
            self.fail(f"{where} is {st.dtype.name} and requires grad; only floating-point tensors can")
        t = Tensor._make(st, shape, stride, offset)
        from . import nn  # nn is above serialization in the package; import when loading

        parameter = getattr(nn, "Parameter", None)
        if spec["parameter"] and parameter is not None:
            return parameter(t, requires_grad=spec["requires_grad"])
        t.requires_grad = spec["requires_grad"]
        return t

    def float(self, text: str, where: str) -> float:
        """Exactly the strings ``float.hex`` writes ("0x1.8000000000000p+0", "-0x0.0p+0", "inf", "nan"):
        ``float.fromhex`` alone reads "1.5" as hex (1.3125) and raises OverflowError for "0x1p+100000"."""
        try:
            value = float.fromhex(text)
        except (ValueError, OverflowError):
            value = None
        if value is None or value.hex() != text:
            self.fail(f"{where} float {_short(text)} is not a float.hex() string (like "
                      "'0x1.8000000000000p+0', 'inf' or 'nan')")
        return value

    def node(self, n: Any, where: str, depth: int, key: bool = False) -> Any:
        if depth > MAX_DEPTH:
            self.fail(f"{where} is nested more than {MAX_DEPTH} levels deep")
        kind = n.get("type") if type(n) is dict else None
        allowed = _KEY_NODES if key else _NODES
        if type(kind) is not str or kind not in allowed:
            self.fail(f"{where} should be a node with a 'type' among {', '.join(allowed)}"
                      f"{' (a dict key)' if key else ''}, found {_kind(n)}")
        self.fields(n, {"type": str, **_NODES[kind]}, where)
        if kind == "none":
            return None
        if kind in ("bool", "int", "str"):
            return n["value"]
        if kind == "float":
            return self.float(n["value"], where)
        if kind == "bytes":
            try:
                return base64.b64decode(n["value"], validate=True)
            except (binascii.Error, ValueError):
                self.fail(f"{where} bytes value is not valid base64")
        if kind == "dtype":
            return self.dtype(n["name"], where)
        if kind == "tensor":
            if not 0 <= n["index"] < len(self.tensors):
                self.fail(f"{where} refers to tensor {n['index']}, but there are {len(self.tensors)}")
            return self.tensors[n["index"]]
        if kind in ("list", "tuple"):
            items = [self.node(x, f"{where}[{i}]", depth + 1, key) for i, x in enumerate(n["items"])]
            return items if kind == "list" else tuple(items)
        out = {} if kind == "dict" else OrderedDict()
        for i, pair in enumerate(n["items"]):
            if type(pair) is not list or len(pair) != 2:
                self.fail(f"{where} item {i} should be a [key, value] pair, found {_kind(pair)}")
            k = self.node(pair[0], f"{where} key {i}", depth + 1, key=True)
            if k in out:
                self.fail(f"{where} has the key {_short(k)} twice")
            # a short key in the path: every node below copies it, so a long key would cost its
            # length once per descendant
            out[k] = self.node(pair[1], f"{where}[{_short(k)}]", depth + 1)
        return out


def _kind(value: Any) -> str:
    text = _short(value)
    text = text if len(text) <= 40 else text[:40] + "..."
    return f"{_JSON_KINDS.get(type(value), type(value).__name__)} {text}"


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 40
_SHORT.maxlevel = 3


def _short(value: Any) -> str:
    """``repr`` for error messages, cut short: values come from the file and may be megabytes long."""
    return _SHORT.repr(value)


class _Window:
    """The first ``size`` bytes of a seekable file, for zipfile to read: reads stop there even
    when the file goes on (/dev/zero reports size 0 and never ends; a file may grow while loading)."""

    def __init__(self, inner: IO[bytes], size: int):
        self.inner, self.size, self.pos = inner, size, inner.tell()

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        pos = offset + (0, self.pos, self.size)[whence]
        if pos < 0:
            raise OSError(f"seek to {pos}, before the start of the file")
        self.inner.seek(pos)
        self.pos = pos
        return pos

    def read(self, n: int | None = -1) -> bytes:
        room = max(self.size - self.pos, 0)
        data = self.inner.read(room if n is None or n < 0 else min(n, room))
        self.pos += len(data)
        return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("an object has a repeated field name")
    return out


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")
