#!/usr/bin/python3
"""Cross-check the vectorized dequantizers in dequant.py against slow per-element loops
written directly from the block layouts, on random block bytes (with finite fp16 scales).

Q4_0, Q8_0, Q4_K, Q6_K, F16, BF16 are also validated end-to-end by
check_against_llamacpp.py; Q4_1, Q5_0, Q5_1, Q5_K are only covered here.
Usage: /usr/bin/python3 tests/reference/test_dequant.py
"""

import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from dequant import BLOCK, dequantize  # noqa: E402


def f16(b, o):
    return float(np.frombuffer(bytes(b[o:o + 2]), dtype="<f2")[0])


def scale_min_k4(j, q):
    if j < 4:
        return q[j] & 63, q[j + 4] & 63
    return (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)


def slow_block(t, b):
    y = []
    if t == 2:  # Q4_0
        d = f16(b, 0)
        qs = b[2:18]
        y = [d * ((qs[j] & 15) - 8) for j in range(16)] + [d * ((qs[j] >> 4) - 8) for j in range(16)]
    elif t == 3:  # Q4_1
        d, m = f16(b, 0), f16(b, 2)
        qs = b[4:20]
        y = [d * (qs[j] & 15) + m for j in range(16)] + [d * (qs[j] >> 4) + m for j in range(16)]
    elif t in (6, 7):  # Q5_0 / Q5_1
        d = f16(b, 0)
        m = f16(b, 2) if t == 7 else None
        o = 4 if t == 7 else 2
        qh = struct.unpack_from("<I", bytes(b), o)[0]
        qs = b[o + 4:o + 20]
        lo = [(qs[j] & 15) | (((qh >> j) & 1) << 4) for j in range(16)]
        hi = [(qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4) for j in range(16)]
        if t == 6:
            y = [d * (q - 16) for q in lo + hi]
        else:
            y = [d * q + m for q in lo + hi]
    elif t == 8:  # Q8_0
        d = f16(b, 0)
        y = [d * (x - 256 if x > 127 else x) for x in b[2:34]]
    elif t in (12, 13):  # Q4_K / Q5_K
        d, dmin = f16(b, 0), f16(b, 2)
        sc = b[4:16]
        if t == 12:
            qh, qs = None, b[16:144]
        else:
            qh, qs = b[16:48], b[48:176]
        y = [0.0] * 256
        for c in range(4):
            for half in range(2):
                s, mn = scale_min_k4(2 * c + half, sc)
                for l in range(32):
                    q = qs[32 * c + l]
                    q = (q & 15) if half == 0 else (q >> 4)
                    if qh is not None:
                        q |= ((qh[l] >> (2 * c + half)) & 1) << 4
                    y[64 * c + 32 * half + l] = d * s * q - dmin * mn
    elif t == 14:  # Q6_K
        ql, qh, sc = b[0:128], b[128:192], [x - 256 if x > 127 else x for x in b[192:208]]
        d = f16(b, 208)
        y = [0.0] * 256
        for h in range(2):
            for l in range(32):
                L, H, S = ql[64 * h:], qh[32 * h:], sc[8 * h:]
                is_ = l // 16
                q1 = ((L[l] & 15) | (((H[l] >> 0) & 3) << 4)) - 32
                q2 = ((L[l + 32] & 15) | (((H[l] >> 2) & 3) << 4)) - 32
                q3 = ((L[l] >> 4) | (((H[l] >> 4) & 3) << 4)) - 32
                q4 = ((L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)) - 32
                y[128 * h + l] = d * S[is_] * q1
                y[128 * h + l + 32] = d * S[is_ + 2] * q2
                y[128 * h + l + 64] = d * S[is_ + 4] * q3
                y[128 * h + l + 96] = d * S[is_ + 6] * q4
    elif t == 0x10001:  # LQ2 (tierlm's low-bit expert copies)
        qs, sc = b[0:64], b[64:80]
        d, dmin = f16(b, 80), f16(b, 82)
        y = [0.0] * 256
        for e in range(256):
            g, k, j = e // 16, (e % 16) // 4, e % 4
            q = (qs[4 * g + j] >> (2 * k)) & 3
            y[e] = d * (sc[g] & 15) * q - dmin * (sc[g] >> 4)
    else:
        raise ValueError(t)
    return y


def random_blocks(rng, t, nb):
    bs, bb = BLOCK[t]
    raw = rng.integers(0, 256, size=(nb, bb), dtype=np.uint8)
    # put finite, moderate fp16 values where the scales live
    f16pos = {2: [0], 3: [0, 2], 6: [0], 7: [0, 2], 8: [0], 12: [0, 2], 13: [0, 2], 14: [208], 0x10001: [80, 82]}[t]
    for p in f16pos:
        raw[:, p:p + 2] = np.frombuffer(rng.normal(0, 0.05, nb).astype("<f2").tobytes(), dtype=np.uint8).reshape(nb, 2)
    return raw


def main():
    rng = np.random.default_rng(1234)
    bad = 0
    for t in (2, 3, 6, 7, 8, 12, 13, 14, 0x10001):
        bs, bb = BLOCK[t]
        nb = 6
        raw = random_blocks(rng, t, nb)
        fast = dequantize(t, raw.tobytes(), (bs * 2, nb // 2)).reshape(-1)
        slow = np.array([v for i in range(nb) for v in slow_block(t, list(raw[i]))], dtype=np.float64)
        err = float(np.max(np.abs(fast - slow) / (np.abs(slow) + 1e-6)))
        ok = err < 1e-5
        bad += not ok
        print("type %2d: %d blocks, max rel err %.2g %s" % (t, nb, err, "ok" if ok else "FAIL"))
    # F16 / BF16 round trips
    x = rng.normal(0, 1, 64).astype(np.float32)
    h = x.astype("<f2")
    assert np.array_equal(dequantize(1, h.tobytes(), (64,)), h.astype(np.float32))
    bf = (x.view(np.uint32) >> 16).astype("<u2")
    want = (bf.astype(np.uint32) << 16).view(np.float32)
    assert np.array_equal(dequantize(30, bf.tobytes(), (64,)), want)
    print("F16/BF16 ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
