"""Reader of tierlm's low-bit expert cache file (own code, written from the layout that
src/tiers/lowbit_expert_cache.h documents; no tierlm code is used).

Layout (little-endian), version 1:
  [0, 4096)   header: magic "TLMLOWBT", u32 version, u32 low-bit type, u64 model size,
              i64 model mtime (ns), u64 model header hash (xxh3 of the GGUF bytes before
              the tensor data), u64 entry count, u64 table offset, u64 table bytes,
              u64 table hash, u64 data offset, u64 file size, u64 xxh3 of the 96 bytes
              before it; zero padded to 4096
  [4096, ...) entry table: per entry u32 name length, name, u32 type, u32 padding (0),
              i64 n_in, i64 n_out, u64 offset, u64 size, u64 xxh3 of the entry's bytes
  data        each entry at a 4 KiB-aligned offset; the file padded to a multiple of 4 KiB

An entry "blk.L.ffn_X_exps.weight#e" is expert e's slice of the stacked tensor: n_out
rows of n_in elements in the low-bit type (LQ2: 256 elements per 84-byte block).

Checksums (xxh3-64) are verified through the system libxxhash when it is installed
(ctypes); without it only the structure (bounds, alignment, sizes, model size/mtime) is
checked and `checksums_verified` is False.
"""

import ctypes
import ctypes.util
import os
import re
import struct

import numpy as np

from dequant import LQ2, deq_lq2

MAGIC = b"TLMLOWBT"
VERSION = 1
HEADER_BYTES = 4096
ALIGN = 4096
LQ2_BLOCK = 256
LQ2_BLOCK_BYTES = 84
_HEADER_FMT = "<8sIIQqQQQQQQQQ"  # magic .. file size, then the header hash
_HEADER_HASHED = struct.calcsize("<8sIIQqQQQQQQQ")  # 96 bytes
_RECORD_FIXED = struct.calcsize("<IIqqQQQ")  # after the name


class LowbitCacheError(ValueError):
    pass


def _load_xxh3():
    for name in (ctypes.util.find_library("xxhash"), "libxxhash.so.0", "libxxhash.so"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            fn = lib.XXH3_64bits
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_uint64
        fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        return lambda b: int(fn(bytes(b), len(b)))
    return None


xxh3 = _load_xxh3()


class Entry:
    __slots__ = ("name", "type", "n_in", "n_out", "offset", "size", "checksum")

    def __init__(self, name, type_, n_in, n_out, offset, size, checksum):
        self.name, self.type, self.n_in, self.n_out = name, type_, n_in, n_out
        self.offset, self.size, self.checksum = offset, size, checksum


class LowbitCache:
    def __init__(self, path, model_path=None, verify=True):
        self.path = path
        with open(path, "rb") as f:
            self.buf = f.read()
        buf = self.buf
        err = lambda what: LowbitCacheError("%s: low-bit expert cache: %s" % (path, what))  # noqa: E731
        if len(buf) < HEADER_BYTES:
            raise err("file has %d bytes, less than the 4096-byte header" % len(buf))
        (magic, self.version, self.type, self.model_size, self.model_mtime, self.model_header_hash, n_entries,
         table_offset, table_bytes, table_hash, data_offset, file_size, header_hash) = \
            struct.unpack_from(_HEADER_FMT, buf, 0)
        if magic != MAGIC:
            raise err("bad magic %r" % magic)
        if self.version != VERSION:
            raise err("version %d, this reader knows version %d" % (self.version, VERSION))
        if self.type != LQ2:
            raise err("unknown low-bit type id %#x" % self.type)
        self.checksums_verified = bool(verify and xxh3 is not None)
        if self.checksums_verified and xxh3(buf[:_HEADER_HASHED]) != header_hash:
            raise err("header checksum mismatch")
        if file_size != len(buf) or len(buf) % ALIGN != 0:
            raise err("header says %d bytes, the file has %d" % (file_size, len(buf)))
        if table_offset != HEADER_BYTES or table_offset + table_bytes > data_offset \
                or data_offset % ALIGN != 0 or data_offset > len(buf):
            raise err("entry table bounds (offset %d, %d bytes, data at %d)" % (table_offset, table_bytes, data_offset))
        table = buf[table_offset:table_offset + table_bytes]
        if self.checksums_verified and xxh3(table) != table_hash:
            raise err("entry table checksum mismatch")
        if model_path is not None:
            st = os.stat(model_path)
            if st.st_size != self.model_size or st.st_mtime_ns != self.model_mtime:
                raise err("stale: built for another model file (size %d mtime %d; %s has size %d mtime %d)"
                          % (self.model_size, self.model_mtime, model_path, st.st_size, st.st_mtime_ns))
        self.entries = []
        self.by_name = {}
        pos, prev_end = 0, data_offset
        for i in range(n_entries):
            if pos + 4 > len(table):
                raise err("entry %d runs past the table" % i)
            (name_len,) = struct.unpack_from("<I", table, pos)
            pos += 4
            if pos + name_len + _RECORD_FIXED > len(table):
                raise err("entry %d runs past the table" % i)
            name = table[pos:pos + name_len].decode("utf-8")
            pos += name_len
            type_, pad, n_in, n_out, offset, size, checksum = struct.unpack_from("<IIqqQQQ", table, pos)
            pos += _RECORD_FIXED
            if type_ != self.type or pad != 0:
                raise err("entry %d '%s': type %#x, padding %d" % (i, name, type_, pad))
            if n_in <= 0 or n_out <= 0 or n_in % LQ2_BLOCK != 0 or size != n_out * (n_in // LQ2_BLOCK) * LQ2_BLOCK_BYTES:
                raise err("entry %d '%s': shape [%d, %d] does not match its size %d" % (i, name, n_in, n_out, size))
            if offset % ALIGN != 0 or offset < prev_end or offset + size > len(buf):
                raise err("entry %d '%s': data at %d (%d bytes) misaligned, overlapping or outside the file"
                          % (i, name, offset, size))
            prev_end = offset + size
            if name in self.by_name:
                raise err("duplicate entry '%s'" % name)
            e = Entry(name, type_, n_in, n_out, offset, size, checksum)
            self.by_name[name] = e
            self.entries.append(e)
        if pos != len(table):
            raise err("entry table has %d trailing bytes" % (len(table) - pos))

    def check_model_header(self, gguf):
        """Stale check against the model's bytes before its tensor data (a GGUFFile)."""
        if xxh3 is None:
            return
        h = xxh3(gguf.buf[:min(gguf.data_start, len(gguf.buf))])
        if h != self.model_header_hash:
            raise LowbitCacheError("%s: low-bit expert cache: stale: built for another model (header hash %016x, "
                                   "the model's is %016x)" % (self.path, self.model_header_hash, h))

    def raw(self, e):
        data = memoryview(self.buf)[e.offset:e.offset + e.size]
        if self.checksums_verified and xxh3(data) != e.checksum:
            raise LowbitCacheError("%s: low-bit expert cache: entry '%s' checksum mismatch" % (self.path, e.name))
        return data

    def dequant(self, e):
        """The entry's weights, float32 (n_out, n_in)."""
        return deq_lq2(self.raw(e)).reshape(e.n_out, e.n_in)


_NAME = re.compile(r"^blk\.(\d+)\.ffn_(gate|up|down)_exps\.weight#(\d+)$")


def apply_to_model(model, cache):
    """Replaces each expert slice of the reference model's stacked *_exps tensors that the
    cache has a copy of by that copy (the reference of tierlm's lowbit-all mode). Returns
    the number of slices replaced; raises if an entry does not fit the model."""
    import torch
    n = 0
    for e in cache.entries:
        m = _NAME.match(e.name)
        if not m:
            raise LowbitCacheError("%s: entry '%s' is not an expert slice" % (cache.path, e.name))
        layer, kind, expert = int(m.group(1)), m.group(2), int(m.group(3))
        if layer >= len(model.layers) or (kind + "_exps") not in model.layers[layer]:
            raise LowbitCacheError("%s: entry '%s' has no tensor in the model" % (cache.path, e.name))
        stacked = model.layers[layer][kind + "_exps"]
        if expert >= stacked.shape[0] or tuple(stacked.shape[1:]) != (e.n_out, e.n_in):
            raise LowbitCacheError("%s: entry '%s' shape [%d, %d] does not match the model's %s"
                                   % (cache.path, e.name, e.n_out, e.n_in, tuple(stacked.shape)))
        stacked[expert] = torch.from_numpy(cache.dequant(e)).to(stacked.dtype)
        n += 1
    return n
