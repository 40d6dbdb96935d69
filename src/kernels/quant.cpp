#include "kernels/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/block_types.h"

namespace tierlm {
namespace {

uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round half to even, as ggml's nearest_int does.
int NearestInt(float v) { return static_cast<int>(std::nearbyint(v)); }

void DequantQ8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = F16ToF32(b[i].d);
    for (int j = 0; j < 32; ++j) y[i * 32 + j] = d * b[i].qs[j];
  }
}

void DequantQ4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = F16ToF32(b[i].d);
    for (int j = 0; j < 16; ++j) {
      y[i * 32 + j] = d * ((b[i].qs[j] & 0x0F) - 8);
      y[i * 32 + j + 16] = d * ((b[i].qs[j] >> 4) - 8);
    }
  }
}

void DequantQ4_K(const BlockQ4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = F16ToF32(b[i].d);
    const float dmin = F16ToF32(b[i].dmin);
    float* out = y + i * 256;
    for (int c = 0; c < 4; ++c) {
      int sc0, m0, sc1, m1;
      UnpackQ4KScaleMin(b[i].scales, 2 * c, &sc0, &m0);
      UnpackQ4KScaleMin(b[i].scales, 2 * c + 1, &sc1, &m1);
      const uint8_t* q = b[i].qs + 32 * c;
      for (int l = 0; l < 32; ++l) {
        out[64 * c + l] = d * sc0 * (q[l] & 0x0F) - dmin * m0;
        out[64 * c + 32 + l] = d * sc1 * (q[l] >> 4) - dmin * m1;
      }
    }
  }
}

// Element e of a Q6_K block as its unsigned 6-bit code (0..63).
inline int Q6KCode(const BlockQ6_K& b, int e) {
  const int half = e / 128, r = e % 128, k = r / 32, l = r % 32;
  const uint8_t ql = b.ql[64 * half + l + 32 * (k & 1)];
  const int low = (k < 2) ? (ql & 0x0F) : (ql >> 4);
  const int high = (b.qh[32 * half + l] >> (2 * k)) & 3;
  return low | (high << 4);
}

void DequantQ6_K(const BlockQ6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = F16ToF32(b[i].d);
    for (int e = 0; e < 256; ++e) y[i * 256 + e] = d * b[i].scales[e / 16] * (Q6KCode(b[i], e) - 32);
  }
}

void QuantQ8_0(const float* x, BlockQ8_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * 32;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = F32ToF16(d);
    for (int j = 0; j < 32; ++j) b[i].qs[j] = static_cast<int8_t>(std::round(xb[j] * id));
  }
}

void QuantQ4_0(const float* x, BlockQ4_0* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * 32;
    float amax = 0.0f, max = 0.0f;  // max: the element of largest magnitude, with its sign
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = F32ToF16(d);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(xb[j] * id + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(xb[j + 16] * id + 8.5f)));
      b[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

// Fits x[i] ~= scale * L[i] - the_min with L in [0, nmax] minimizing the weighted squared
// error: a first guess from the range, then nstep scale candidates around it, each refined
// by weighted least squares (llama.cpp's make_qkx2_quants without the MAD option).
float FitScaleMin(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                  float* the_min, uint8_t* L_try, float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0], sum_w = 0.0f, sum_x = 0.0f;
  for (int i = 0; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (min > 0.0f) min = 0.0f;
  if (max == min) {
    std::fill(L, L + n, 0);
    *the_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min);
  float scale = 1.0f / iscale;
  float best_error = 0.0f;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::clamp(NearestInt(iscale * (x[i] - min)), 0, nmax));
    const float diff = scale * L[i] + min - x[i];
    best_error += weights[i] * diff * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
      L_try[i] = static_cast<uint8_t>(l);
      sum_l += weights[i] * l;
      sum_l2 += weights[i] * l * l;
      sum_xl += weights[i] * l * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det <= 0.0f) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_min > 0.0f) {
      this_min = 0.0f;
      this_scale = sum_xl / sum_l2;
    }
    float error = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * L_try[i] + this_min - x[i];
      error += weights[i] * diff * diff;
    }
    if (error < best_error) {
      std::copy(L_try, L_try + n, L);
      best_error = error;
      scale = this_scale;
      min = this_min;
    }
  }
  *the_min = -min;
  return scale;
}

// Fits x[i] ~= scale * (L[i] - nmax) with L - nmax in [-nmax, nmax - 1], trying 19 scales
// around -nmax / (signed max) and keeping the best x^2-weighted least-squares fit
// (llama.cpp's make_qx_quants with rmse_type 1).
float FitSymmetricScale(int n, int nmax, const float* x, uint8_t* L) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax < 1e-15f) {
    std::fill(L, L + n, 0);
    return 0.0f;
  }
  auto code = [&](float iscale, int i) {
    return std::clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
  };
  float iscale = -nmax / max;
  float sum_lx = 0.0f, sum_l2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = code(iscale, i);
    L[i] = static_cast<uint8_t>(l + nmax);
    const float w = x[i] * x[i];
    sum_lx += w * x[i] * l;
    sum_l2 += w * l * l;
  }
  float scale = sum_l2 != 0.0f ? sum_lx / sum_l2 : 0.0f;
  float best = scale * sum_lx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sum_lx = sum_l2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = code(iscale, i);
      const float w = x[i] * x[i];
      sum_lx += w * x[i] * l;
      sum_l2 += w * l * l;
    }
    if (sum_l2 > 0.0f && sum_lx * sum_lx > best * sum_l2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(code(iscale, i) + nmax);
      scale = sum_lx / sum_l2;
      best = scale * sum_lx;
    }
  }
  return scale;
}

void QuantQ4_K(const float* x, BlockQ4_K* b, int64_t nb) {
  uint8_t L[256], L_try[32];
  float weights[32], scales[8], mins[8];
  for (int64_t i = 0; i < nb; ++i, x += 256) {
    float sum_x2 = 0.0f;
    for (int l = 0; l < 256; ++l) sum_x2 += x[l] * x[l];
    const float av_x = std::sqrt(sum_x2 / 256);
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; ++j) {
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = FitScaleMin(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], L_try, -1.0f,
                              0.1f, 20);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    std::memset(b[i].scales, 0, 12);
    for (int j = 0; j < 8; ++j) {
      const int ls = std::min(63, NearestInt(inv_scale * scales[j]));
      const int lm = std::min(63, NearestInt(inv_min * mins[j]));
      if (j < 4) {
        b[i].scales[j] = static_cast<uint8_t>(ls);
        b[i].scales[j + 4] = static_cast<uint8_t>(lm);
      } else {
        b[i].scales[j + 4] = static_cast<uint8_t>((ls & 0x0F) | ((lm & 0x0F) << 4));
        b[i].scales[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
        b[i].scales[j] |= static_cast<uint8_t>((lm >> 4) << 6);
      }
    }
    b[i].d = F32ToF16(max_scale / 63.0f);
    b[i].dmin = F32ToF16(max_min / 63.0f);
    // Requantize against the scales as stored.
    const float d_all = F16ToF32(b[i].d), dmin_all = F16ToF32(b[i].dmin);
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      UnpackQ4KScaleMin(b[i].scales, j, &sc, &m);
      const float d = d_all * sc;
      if (d == 0.0f) continue;
      const float dm = dmin_all * m;
      for (int l = 0; l < 32; ++l)
        L[32 * j + l] = static_cast<uint8_t>(std::clamp(NearestInt((x[32 * j + l] + dm) / d), 0, 15));
    }
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        b[i].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
  }
}

void QuantQ6_K(const float* x, BlockQ6_K* b, int64_t nb) {
  uint8_t L[256];
  float scales[16];
  for (int64_t i = 0; i < nb; ++i, x += 256) {
    float max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int g = 0; g < 16; ++g) {
      scales[g] = FitSymmetricScale(16, 32, x + 16 * g, L + 16 * g);
      if (std::fabs(scales[g]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[g]);
        max_scale = scales[g];
      }
    }
    std::memset(&b[i], 0, sizeof(BlockQ6_K));
    if (max_abs_scale < 1e-15f) continue;  // all zero: d = 0, codes irrelevant
    const float iscale = -128.0f / max_scale;
    b[i].d = F32ToF16(1.0f / iscale);
    for (int g = 0; g < 16; ++g)
      b[i].scales[g] = static_cast<int8_t>(std::min(127, NearestInt(iscale * scales[g])));
    const float d_all = F16ToF32(b[i].d);
    for (int g = 0; g < 16; ++g) {
      const float d = d_all * b[i].scales[g];
      if (d == 0.0f) continue;
      for (int l = 0; l < 16; ++l)
        L[16 * g + l] = static_cast<uint8_t>(std::clamp(NearestInt(x[16 * g + l] / d), -32, 31) + 32);
    }
    for (int half = 0; half < 2; ++half) {
      const uint8_t* Lh = L + 128 * half;
      uint8_t* ql = b[i].ql + 64 * half;
      uint8_t* qh = b[i].qh + 32 * half;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((Lh[l] & 0x0F) | ((Lh[l + 64] & 0x0F) << 4));
        ql[l + 32] = static_cast<uint8_t>((Lh[l + 32] & 0x0F) | ((Lh[l + 96] & 0x0F) << 4));
        qh[l] = static_cast<uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) |
                                     ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
      }
    }
  }
}

void DequantLQ2(const BlockLQ2* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = F16ToF32(b[i].d), dmin = F16ToF32(b[i].dmin);
    for (int e = 0; e < 256; ++e) {
      const int g = e / 16;
      const int q = (b[i].qs[LQ2Byte(e)] >> LQ2Shift(e)) & 3;
      y[i * 256 + e] = d * (b[i].scales[g] & 15) * q - dmin * (b[i].scales[g] >> 4);
    }
  }
}

// Squared error of one group of 16 coded with step `d` and offset `-m`, codes into L.
float LQ2GroupError(const float* x, float d, float m, uint8_t* L) {
  float err = 0.0f;
  const float id = d > 0.0f ? 1.0f / d : 0.0f;
  for (int l = 0; l < 16; ++l) {
    const int q = d > 0.0f ? std::clamp(NearestInt((x[l] + m) * id), 0, 3) : 0;
    L[l] = static_cast<uint8_t>(q);
    const float diff = d * q - m - x[l];
    err += diff * diff;
  }
  return err;
}

// Minimizes the squared error (plain RMSE, no importance weights): each group's scale and
// min by a grid of 16 scales with least-squares refits (FitScaleMin), then, after the
// group values are rounded to 4 bits of the block's f16 d / dmin, each group tries its
// rounded scale and min +-1 and keeps the pair (with its best codes) of least error.
void QuantLQ2(const float* x, BlockLQ2* b, int64_t nb) {
  uint8_t L[256], L_try[16], L_best[16];
  float ones[16], scales[16], mins[16];
  std::fill(ones, ones + 16, 1.0f);
  for (int64_t i = 0; i < nb; ++i, x += 256) {
    float max_scale = 0.0f, max_min = 0.0f;
    for (int g = 0; g < 16; ++g) {
      scales[g] = FitScaleMin(16, 3, x + 16 * g, ones, L + 16 * g, &mins[g], L_try, -0.5f, 0.1f, 15);
      max_scale = std::max(max_scale, scales[g]);
      max_min = std::max(max_min, mins[g]);
    }
    std::memset(&b[i], 0, sizeof(BlockLQ2));
    b[i].d = F32ToF16(max_scale / 15.0f);
    b[i].dmin = F32ToF16(max_min / 15.0f);
    const float d = F16ToF32(b[i].d), dmin = F16ToF32(b[i].dmin);
    for (int g = 0; g < 16; ++g) {
      const float* xg = x + 16 * g;
      const int sc0 = d > 0.0f ? std::clamp(NearestInt(scales[g] / d), 0, 15) : 0;
      const int mn0 = dmin > 0.0f ? std::clamp(NearestInt(mins[g] / dmin), 0, 15) : 0;
      float best = -1.0f;
      int best_sc = 0, best_mn = 0;
      for (int sc = std::max(0, sc0 - 1); sc <= std::min(15, sc0 + 1); ++sc) {
        for (int mn = std::max(0, mn0 - 1); mn <= std::min(15, mn0 + 1); ++mn) {
          const float err = LQ2GroupError(xg, d * sc, dmin * mn, L_try);
          if (best < 0.0f || err < best) {
            best = err;
            best_sc = sc;
            best_mn = mn;
            std::copy(L_try, L_try + 16, L_best);
          }
        }
      }
      b[i].scales[g] = static_cast<uint8_t>(best_sc | (best_mn << 4));
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * g + l;
        b[i].qs[LQ2Byte(e)] |= static_cast<uint8_t>(L_best[l] << LQ2Shift(e));
      }
    }
  }
}

}  // namespace

float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  const uint32_t mant = h & 0x3FF;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in f32
    const float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return BitsFloat(FloatBits(v) | sign);
  }
  if (exp == 31) return BitsFloat(sign | 0x7F800000u | (mant << 13));
  return BitsFloat(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t F32ToF16(float f) {
  const uint32_t x = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u) {  // inf, or nan kept quiet with its high payload bits
    if (ax == 0x7F800000u) return sign | 0x7C00;
    return static_cast<uint16_t>(sign | 0x7E00 | ((ax >> 13) & 0x3FF));
  }
  if (ax >= 0x477FF000u) return sign | 0x7C00;  // >= 65520 rounds to inf
  if (ax < 0x38800000u) {
    // Below 2^-14: the result is subnormal. Adding 0.5 puts the value in [0.5, 1), whose
    // f32 ulp (2^-24) is the f16 subnormal step, so the FPU rounds to nearest even for us.
    const float v = BitsFloat(ax) + 0.5f;
    return static_cast<uint16_t>(sign | (FloatBits(v) - FloatBits(0.5f)));
  }
  const uint32_t odd = (ax >> 13) & 1;
  ax += (static_cast<uint32_t>(15 - 127) << 23) + 0xFFF + odd;
  return static_cast<uint16_t>(sign | (ax >> 13));
}

uint16_t F32ToF16Down(float f) {
  const uint16_t h = F32ToF16(f);
  if (f != f || F16ToF32(h) <= f) return h;
  // One half toward -inf: from +0 to the negative smallest subnormal, else one step of the
  // magnitude (up for negatives, down for positives).
  if (h == 0x0000) return 0x8001;
  return (h & 0x8000) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h - 1);
}

uint16_t F32ToF16Up(float f) {
  const uint16_t h = F32ToF16(f);
  if (f != f || F16ToF32(h) >= f) return h;
  if (h == 0x8000) return 0x0001;
  return (h & 0x8000) ? static_cast<uint16_t>(h - 1) : static_cast<uint16_t>(h + 1);
}

float Bf16ToF32(uint16_t h) { return BitsFloat(static_cast<uint32_t>(h) << 16); }

uint16_t F32ToBf16(float f) {
  const uint32_t x = FloatBits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet nan
  return static_cast<uint16_t>((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

void DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n) {
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case GgmlType::kF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = F16ToF32(h[i]);
      return;
    }
    case GgmlType::kBF16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToF32(h[i]);
      return;
    }
    case GgmlType::kQ8_0:
      return DequantQ8_0(static_cast<const BlockQ8_0*>(src), dst, n / 32);
    case GgmlType::kQ4_0:
      return DequantQ4_0(static_cast<const BlockQ4_0*>(src), dst, n / 32);
    case GgmlType::kQ4_K:
      return DequantQ4_K(static_cast<const BlockQ4_K*>(src), dst, n / 256);
    case GgmlType::kQ6_K:
      return DequantQ6_K(static_cast<const BlockQ6_K*>(src), dst, n / 256);
    case GgmlType::kLQ2:
      return DequantLQ2(static_cast<const BlockLQ2*>(src), dst, n / 256);
    default:
      std::abort();
  }
}

void QuantizeRow(GgmlType type, const float* src, void* dst, int64_t n) {
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case GgmlType::kF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = F32ToF16(src[i]);
      return;
    }
    case GgmlType::kBF16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = F32ToBf16(src[i]);
      return;
    }
    case GgmlType::kQ8_0:
      return QuantQ8_0(src, static_cast<BlockQ8_0*>(dst), n / 32);
    case GgmlType::kQ4_0:
      return QuantQ4_0(src, static_cast<BlockQ4_0*>(dst), n / 32);
    case GgmlType::kQ4_K:
      return QuantQ4_K(src, static_cast<BlockQ4_K*>(dst), n / 256);
    case GgmlType::kQ6_K:
      return QuantQ6_K(src, static_cast<BlockQ6_K*>(dst), n / 256);
    case GgmlType::kLQ2:
      return QuantLQ2(src, static_cast<BlockLQ2*>(dst), n / 256);
    default:
      std::abort();
  }
}

}  // namespace tierlm
