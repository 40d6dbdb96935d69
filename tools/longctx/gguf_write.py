"""A small GGUF (version 3) writer for the long-context model: metadata of the types it
needs (strings, u32, f32, bools, arrays of strings / f32 / i32) and F32 / F16 tensors."""

import struct

import numpy as np

T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
GGML_F32, GGML_F16 = 0, 1
ALIGN = 32


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(v):
    """(type, bytes) of one metadata value; ints are u32 unless wrapped as ('i32', x)."""
    if isinstance(v, bool):
        return T_BOOL, struct.pack("<?", v)
    if isinstance(v, int):
        return T_U32, struct.pack("<I", v)
    if isinstance(v, float):
        return T_F32, struct.pack("<f", v)
    if isinstance(v, str):
        return T_STRING, _str(v)
    if isinstance(v, tuple) and v[0] == "i32":
        return T_I32, struct.pack("<i", v[1])
    if isinstance(v, tuple) and v[0] == "f32[]":
        a = np.asarray(v[1], dtype="<f4")
        return T_ARRAY, struct.pack("<IQ", T_F32, a.size) + a.tobytes()
    if isinstance(v, tuple) and v[0] == "i32[]":
        a = np.asarray(v[1], dtype="<i4")
        return T_ARRAY, struct.pack("<IQ", T_I32, a.size) + a.tobytes()
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return T_ARRAY, struct.pack("<IQ", T_STRING, len(v)) + b"".join(_str(x) for x in v)
    raise TypeError("unsupported metadata value %r" % (v,))


def write_gguf(path, metadata, tensors):
    """metadata: dict key -> value; tensors: list of (name, np.ndarray, ggml_type), arrays in
    row-major [rows, cols] order (GGUF lists the dimensions innermost first)."""
    head = bytearray(b"GGUF")
    head += struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for k, v in metadata.items():
        t, b = _value(v)
        head += _str(k) + struct.pack("<I", t) + b
    blobs = []
    offset = 0
    for name, arr, gtype in tensors:
        dt = "<f4" if gtype == GGML_F32 else "<f2"
        data = np.ascontiguousarray(arr, dtype=dt).tobytes()
        ne = list(reversed(arr.shape))
        head += _str(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
        head += struct.pack("<IQ", gtype, offset)
        blobs.append((offset, data))
        offset += len(data)
        offset = (offset + ALIGN - 1) // ALIGN * ALIGN
    head += b"\0" * ((-len(head)) % ALIGN)
    with open(path, "wb") as f:
        f.write(head)
        base = len(head)
        for off, data in blobs:
            f.seek(base + off)
            f.write(data)
        f.truncate(base + offset)
