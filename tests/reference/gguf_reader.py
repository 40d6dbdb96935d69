"""Minimal, self-contained GGUF file reader (written from the GGUF format spec).

Layout of a GGUF file (all little-endian):
  magic      4 bytes  "GGUF"
  version    u32      (2 or 3 supported)
  n_tensors  u64
  n_kv       u64
  n_kv x metadata { key: gguf_string, value_type: u32, value }
  n_tensors x tensor_info { name: gguf_string, n_dims: u32, ne: u64[n_dims],
                            ggml_type: u32, offset: u64 }
  padding to general.alignment (default 32)
  tensor data (each tensor at data_start + offset)
gguf_string = u64 length + bytes (UTF-8, not NUL terminated)
"""

import struct

import numpy as np

from dequant import GGML_TYPE_NAMES, dequantize, tensor_nbytes

# metadata value types
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64, T_I64, T_F64 = range(13)

_SCALAR_FMT = {
    T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i",
    T_F32: "<f", T_BOOL: "<?", T_U64: "<Q", T_I64: "<q", T_F64: "<d",
}
_SCALAR_NP = {
    T_U8: "<u1", T_I8: "<i1", T_U16: "<u2", T_I16: "<i2", T_U32: "<u4", T_I32: "<i4",
    T_F32: "<f4", T_BOOL: "<u1", T_U64: "<u8", T_I64: "<i8", T_F64: "<f8",
}


class GGUFError(ValueError):
    pass


class TensorInfo:
    __slots__ = ("name", "ne", "ggml_type", "offset", "data_offset", "nbytes")

    def __init__(self, name, ne, ggml_type, offset):
        self.name = name
        self.ne = tuple(ne)  # ggml order: fastest-varying first
        self.ggml_type = ggml_type
        self.offset = offset
        self.data_offset = None
        self.nbytes = tensor_nbytes(ggml_type, self.ne)

    @property
    def shape(self):
        """numpy shape (slowest first) == reversed ne."""
        return tuple(reversed(self.ne))

    @property
    def type_name(self):
        return GGML_TYPE_NAMES.get(self.ggml_type, "type%d" % self.ggml_type)


class GGUFFile:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0
        self.metadata = {}
        self.tensors = {}  # name -> TensorInfo (insertion ordered)
        self._parse()

    # --- low-level readers -------------------------------------------------
    def _need(self, n):
        if self.pos + n > len(self.buf):
            raise GGUFError("unexpected end of file at offset %d (need %d bytes)" % (self.pos, n))

    def _scalar(self, t):
        fmt = _SCALAR_FMT[t]
        n = struct.calcsize(fmt)
        self._need(n)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def _u32(self):
        return self._scalar(T_U32)

    def _u64(self):
        return self._scalar(T_U64)

    def _string(self):
        n = self._u64()
        self._need(n)
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="surrogateescape")

    def _value(self, t):
        if t in _SCALAR_FMT:
            return self._scalar(t)
        if t == T_STRING:
            return self._string()
        if t == T_ARRAY:
            et = self._u32()
            count = self._u64()
            if et in _SCALAR_NP:
                dt = np.dtype(_SCALAR_NP[et])
                nb = dt.itemsize * count
                self._need(nb)
                arr = np.frombuffer(self.buf, dtype=dt, count=count, offset=self.pos).copy()
                self.pos += nb
                if et == T_BOOL:
                    arr = arr.astype(bool)
                return arr.tolist() if count <= 64 else arr
            return [self._value(et) for _ in range(count)]
        raise GGUFError("unknown metadata value type %d at offset %d" % (t, self.pos))

    # --- parsing -----------------------------------------------------------
    def _parse(self):
        self._need(4)
        if self.buf[:4] != b"GGUF":
            raise GGUFError("bad magic %r (not a GGUF file)" % self.buf[:4])
        self.pos = 4
        self.version = self._u32()
        if self.version not in (2, 3):
            raise GGUFError("unsupported GGUF version %d" % self.version)
        n_tensors = self._u64()
        n_kv = self._u64()
        for _ in range(n_kv):
            key = self._string()
            t = self._u32()
            self.metadata[key] = self._value(t)
        for _ in range(n_tensors):
            name = self._string()
            n_dims = self._u32()
            if n_dims > 4:
                raise GGUFError("tensor %s has %d dims" % (name, n_dims))
            ne = [self._u64() for _ in range(n_dims)]
            gt = self._u32()
            off = self._u64()
            if name in self.tensors:
                raise GGUFError("duplicate tensor name %s" % name)
            self.tensors[name] = TensorInfo(name, ne, gt, off)
        self.alignment = int(self.metadata.get("general.alignment", 32))
        a = self.alignment
        self.data_start = (self.pos + a - 1) // a * a
        for ti in self.tensors.values():
            ti.data_offset = self.data_start + ti.offset
            if ti.data_offset + ti.nbytes > len(self.buf):
                raise GGUFError("tensor %s data out of file bounds" % ti.name)

    # --- accessors -----------------------------------------------------------
    def get(self, key, default=None):
        return self.metadata.get(key, default)

    def raw(self, name):
        ti = self.tensors[name]
        return memoryview(self.buf)[ti.data_offset:ti.data_offset + ti.nbytes]

    def tensor(self, name, dtype=np.float32):
        """Dequantized tensor as numpy array of shape reversed(ne)."""
        ti = self.tensors[name]
        arr = dequantize(ti.ggml_type, self.raw(name), ti.ne)
        return arr.astype(dtype, copy=False)
