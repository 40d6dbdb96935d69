"""Vectorized numpy dequantization of ggml tensor types.

Every function takes the raw bytes of a tensor and returns float32 values in
storage order (flattened); `dequantize` reshapes to numpy order (reversed ne).
Block layouts (little-endian, packed, no padding):

  Q4_0  (32 elems, 18 B): f16 d, u8 qs[16]
        x[j] = d*((qs[j] & 15) - 8), x[j+16] = d*((qs[j] >> 4) - 8)
  Q4_1  (32 elems, 20 B): f16 d, f16 m, u8 qs[16]      x = d*q + m
  Q5_0  (32 elems, 22 B): f16 d, u8 qh[4], u8 qs[16]   5th bit j from qh (u32) bit j
  Q5_1  (32 elems, 24 B): f16 d, f16 m, u8 qh[4], u8 qs[16]
  Q8_0  (32 elems, 34 B): f16 d, i8 qs[32]              x = d*q
  Q4_K  (256 elems, 144 B): f16 d, f16 dmin, u8 scales[12], u8 qs[128]
        8 sub-blocks of 32 with 6-bit scale sc and 6-bit min m;
        x = d*sc*q - dmin*m; q from nibbles: 64-element chunk c uses qs[32c:32c+32],
        low nibbles -> sub-block 2c, high nibbles -> sub-block 2c+1.
  Q5_K  (256 elems, 176 B): f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]
        as Q4_K plus a 5th bit: chunk c low part uses qh bit 2c, high part bit 2c+1.
  Q6_K  (256 elems, 210 B): u8 ql[128], u8 qh[64], i8 scales[16], f16 d
        16 sub-blocks of 16; x = d*scale*(q - 32), q 6 bits.
  LQ2   (256 elems, 84 B; tierlm's own low-bit expert copies, type id 0x10001, never in
        a GGUF file): u8 qs[64], u8 scales[16], f16 d, f16 dmin
        16 groups of 16; element 16g + 4k + j has code q = (qs[4g + j] >> 2k) & 3;
        x = d*(scales[g] & 15)*q - dmin*(scales[g] >> 4).
"""

import numpy as np

GGML_TYPE_NAMES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
    0x10001: "LQ2",
    24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 30: "BF16",
}

# type -> (elements per block, bytes per block)
BLOCK = {
    0: (1, 4), 1: (1, 2), 30: (1, 2), 28: (1, 8),
    2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    12: (256, 144), 13: (256, 176), 14: (256, 210),
    0x10001: (256, 84),
}

LQ2 = 0x10001


def tensor_nbytes(ggml_type, ne):
    if ggml_type not in BLOCK:
        raise ValueError("unsupported ggml type %d (%s)" % (ggml_type, GGML_TYPE_NAMES.get(ggml_type, "?")))
    bs, bb = BLOCK[ggml_type]
    n = 1
    for x in ne:
        n *= int(x)
    if ne and int(ne[0]) % bs != 0:
        raise ValueError("row length %d not a multiple of block size %d" % (ne[0], bs))
    return n // bs * bb


def _blocks(raw, bb):
    a = np.frombuffer(raw, dtype=np.uint8)
    return a.reshape(-1, bb)


def _f16(b):
    """bytes (..., 2) -> float32 (...)"""
    return np.ascontiguousarray(b).view("<f2")[..., 0].astype(np.float32)


def _bf16_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def deq_q4_0(raw):
    b = _blocks(raw, 18)
    d = _f16(b[:, 0:2])[:, None]
    qs = b[:, 2:18]
    q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int8) - 8
    return (d * q).reshape(-1)


def deq_q4_1(raw):
    b = _blocks(raw, 20)
    d = _f16(b[:, 0:2])[:, None]
    m = _f16(b[:, 2:4])[:, None]
    qs = b[:, 4:20]
    q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.float32)
    return (d * q + m).reshape(-1)


def _q5_quants(qh_bytes, qs):
    qh = np.ascontiguousarray(qh_bytes).view("<u4")[:, 0]  # (nb,)
    bits = (qh[:, None] >> np.arange(32, dtype=np.uint32)[None, :]) & 1  # (nb, 32)
    lo = (qs & 15).astype(np.int32) | (bits[:, :16].astype(np.int32) << 4)
    hi = (qs >> 4).astype(np.int32) | (bits[:, 16:].astype(np.int32) << 4)
    return np.concatenate([lo, hi], axis=1)


def deq_q5_0(raw):
    b = _blocks(raw, 22)
    d = _f16(b[:, 0:2])[:, None]
    q = _q5_quants(b[:, 2:6], b[:, 6:22]) - 16
    return (d * q).reshape(-1).astype(np.float32)


def deq_q5_1(raw):
    b = _blocks(raw, 24)
    d = _f16(b[:, 0:2])[:, None]
    m = _f16(b[:, 2:4])[:, None]
    q = _q5_quants(b[:, 4:8], b[:, 8:24])
    return (d * q + m).reshape(-1).astype(np.float32)


def deq_q8_0(raw):
    b = _blocks(raw, 34)
    d = _f16(b[:, 0:2])[:, None]
    q = np.ascontiguousarray(b[:, 2:34]).view(np.int8).astype(np.float32)
    return (d * q).reshape(-1)


def _k_scales_mins(sc12):
    """Unpack the 12-byte K-quant scale field into 8 6-bit scales and 8 6-bit mins.

    bytes 0..3 : low 6 bits = scale[0..3], top 2 bits = high bits of scale[4..7]
    bytes 4..7 : low 6 bits = min[0..3],   top 2 bits = high bits of min[4..7]
    bytes 8..11: low nibble = low 4 bits of scale[4..7], high nibble = low 4 bits of min[4..7]
    """
    s = sc12.astype(np.int32)
    sc = np.empty((s.shape[0], 8), dtype=np.int32)
    mn = np.empty((s.shape[0], 8), dtype=np.int32)
    sc[:, 0:4] = s[:, 0:4] & 63
    mn[:, 0:4] = s[:, 4:8] & 63
    sc[:, 4:8] = (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)
    mn[:, 4:8] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, mn


def deq_q4_k(raw):
    b = _blocks(raw, 144)
    nb = b.shape[0]
    d = _f16(b[:, 0:2])[:, None]
    dmin = _f16(b[:, 2:4])[:, None]
    sc, mn = _k_scales_mins(b[:, 4:16])
    qs = b[:, 16:144].reshape(nb, 4, 32)  # 4 chunks of 64 elements
    q = np.stack([qs & 15, qs >> 4], axis=2).reshape(nb, 8, 32).astype(np.float32)  # sub-block 2c, 2c+1
    scale = (d * sc.astype(np.float32))[:, :, None]
    mins = (dmin * mn.astype(np.float32))[:, :, None]
    return (scale * q - mins).reshape(-1)


def deq_q5_k(raw):
    b = _blocks(raw, 176)
    nb = b.shape[0]
    d = _f16(b[:, 0:2])[:, None]
    dmin = _f16(b[:, 2:4])[:, None]
    sc, mn = _k_scales_mins(b[:, 4:16])
    qh = b[:, 16:48]  # (nb, 32), bit k -> sub-block k
    qs = b[:, 48:176].reshape(nb, 4, 32)
    lo = np.stack([qs & 15, qs >> 4], axis=2).reshape(nb, 8, 32).astype(np.int32)
    hbits = (qh[:, None, :].astype(np.int32) >> np.arange(8)[None, :, None]) & 1  # (nb, 8, 32)
    q = (lo | (hbits << 4)).astype(np.float32)
    scale = (d * sc.astype(np.float32))[:, :, None]
    mins = (dmin * mn.astype(np.float32))[:, :, None]
    return (scale * q - mins).reshape(-1)


def deq_q6_k(raw):
    b = _blocks(raw, 210)
    nb = b.shape[0]
    ql = b[:, 0:128].reshape(nb, 2, 64).astype(np.int32)   # per 128-element half
    qh = b[:, 128:192].reshape(nb, 2, 32).astype(np.int32)
    scales = np.ascontiguousarray(b[:, 192:208]).view(np.int8).astype(np.float32)  # (nb, 16)
    d = _f16(b[:, 208:210])[:, None]
    # within each half of 128 elements, four groups of 32:
    #   g0: low nibble of ql[0:32]  | qh bits 0-1
    #   g1: low nibble of ql[32:64] | qh bits 2-3
    #   g2: high nibble of ql[0:32] | qh bits 4-5
    #   g3: high nibble of ql[32:64]| qh bits 6-7
    g0 = (ql[:, :, 0:32] & 15) | (((qh >> 0) & 3) << 4)
    g1 = (ql[:, :, 32:64] & 15) | (((qh >> 2) & 3) << 4)
    g2 = (ql[:, :, 0:32] >> 4) | (((qh >> 4) & 3) << 4)
    g3 = (ql[:, :, 32:64] >> 4) | (((qh >> 6) & 3) << 4)
    q = np.stack([g0, g1, g2, g3], axis=2).astype(np.float32) - 32.0  # (nb, 2, 4, 32)
    q = q.reshape(nb, 16, 16)  # sub-blocks of 16 elements, in order
    return (d[:, :, None] * scales[:, :, None] * q).reshape(-1)


def deq_lq2(raw):
    b = _blocks(raw, 84)
    nb = b.shape[0]
    qs = b[:, 0:64].reshape(nb, 16, 1, 4).astype(np.int32)       # (block, g, -, j)
    shifts = (2 * np.arange(4, dtype=np.int32)).reshape(1, 1, 4, 1)  # k
    q = ((qs >> shifts) & 3).astype(np.float32)                     # (block, g, k, j)
    sc = b[:, 64:80].astype(np.int32)
    d = _f16(b[:, 80:82])[:, None]
    dmin = _f16(b[:, 82:84])[:, None]
    scale = (d * (sc & 15)).astype(np.float32)[:, :, None, None]
    mins = (dmin * (sc >> 4)).astype(np.float32)[:, :, None, None]
    return (scale * q - mins).reshape(-1)


def dequantize(ggml_type, raw, ne):
    shape = tuple(int(x) for x in reversed(ne)) if ne else (1,)
    if ggml_type == 0:
        out = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    elif ggml_type == 1:
        out = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    elif ggml_type == 30:
        out = _bf16_to_f32(np.frombuffer(raw, dtype="<u2"))
    elif ggml_type == 28:
        out = np.frombuffer(raw, dtype="<f8").copy()
    elif ggml_type == 2:
        out = deq_q4_0(raw)
    elif ggml_type == 3:
        out = deq_q4_1(raw)
    elif ggml_type == 6:
        out = deq_q5_0(raw)
    elif ggml_type == 7:
        out = deq_q5_1(raw)
    elif ggml_type == 8:
        out = deq_q8_0(raw)
    elif ggml_type == 12:
        out = deq_q4_k(raw)
    elif ggml_type == 13:
        out = deq_q5_k(raw)
    elif ggml_type == 14:
        out = deq_q6_k(raw)
    elif ggml_type == LQ2:
        out = deq_lq2(raw)
    else:
        raise ValueError("unsupported ggml type %d (%s)" % (ggml_type, GGML_TYPE_NAMES.get(ggml_type, "?")))
    return out.reshape(shape)
