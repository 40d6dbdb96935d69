// Portable matmul kernels: one weight row times one activation row at a time.
// They read the same activation forms as the SIMD kernels and are their reference.
#include <cstring>

#include "kernels/block_types.h"
#include "kernels/kernel_registry.h"
#include "kernels/quant.h"

namespace tierlm {
namespace {

struct Q8Row {
  const int8_t* qs;
  const float* d;
  const int32_t* sum;
};
Q8Row Q8At(const GemmArgs& a, int64_t t) {
  const uint8_t* row = a.act + t * a.act_layout.row_bytes;
  return {reinterpret_cast<const int8_t*>(row),
          reinterpret_cast<const float*>(row + a.act_layout.d_offset),
          reinterpret_cast<const int32_t*>(row + a.act_layout.sum_offset)};
}

struct Q8KRow {
  const int8_t* qs;
  const float* d;
  const int16_t* bsums;
};
Q8KRow Q8KAt(const GemmArgs& a, int64_t t) {
  const uint8_t* row = a.act + t * a.act_layout.row_bytes;
  return {reinterpret_cast<const int8_t*>(row),
          reinterpret_cast<const float*>(row + a.act_layout.d_offset),
          reinterpret_cast<const int16_t*>(row + a.act_layout.sum_offset)};
}

float DotF32(const uint8_t* w, const float* x, int64_t n) {
  const auto* wf = reinterpret_cast<const float*>(w);
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += wf[i] * x[i];
  return acc;
}

float DotF16(const uint8_t* w, const float* x, int64_t n) {
  const auto* h = reinterpret_cast<const uint16_t*>(w);
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += F16ToF32(h[i]) * x[i];
  return acc;
}

float DotBf16(const uint8_t* w, const float* x, int64_t n) {
  const auto* h = reinterpret_cast<const uint16_t*>(w);
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += Bf16ToF32(h[i]) * x[i];
  return acc;
}

float DotQ8_0(const uint8_t* w, const Q8Row& a, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ8_0*>(w);
  float acc = 0.0f;
  for (int64_t i = 0; i < n / 32; ++i) {
    int32_t s = 0;
    for (int j = 0; j < 32; ++j) s += b[i].qs[j] * a.qs[32 * i + j];
    acc += F16ToF32(b[i].d) * a.d[i] * static_cast<float>(s);
  }
  return acc;
}

float DotQ4_0(const uint8_t* w, const Q8Row& a, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ4_0*>(w);
  float acc = 0.0f;
  for (int64_t i = 0; i < n / 32; ++i) {
    const int8_t* q = a.qs + 32 * i;
    int32_t s = 0;  // sum of nibble * q, corrected below for the nibbles' offset of 8
    for (int j = 0; j < 16; ++j) s += (b[i].qs[j] & 0x0F) * q[j] + (b[i].qs[j] >> 4) * q[j + 16];
    acc += F16ToF32(b[i].d) * a.d[i] * static_cast<float>(s - 8 * a.sum[i]);
  }
  return acc;
}

float DotQ4_K(const uint8_t* w, const Q8KRow& a, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ4_K*>(w);
  float acc = 0.0f;
  for (int64_t i = 0; i < n / 256; ++i) {
    const int8_t* q = a.qs + 256 * i;
    int32_t sum_q = 0, sum_m = 0;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      UnpackQ4KScaleMin(b[i].scales, j, &sc, &m);
      const uint8_t* wq = b[i].qs + 32 * (j / 2);
      const int shift = 4 * (j & 1);
      int32_t s = 0;
      for (int l = 0; l < 32; ++l) s += ((wq[l] >> shift) & 0x0F) * q[32 * j + l];
      sum_q += sc * s;
      sum_m += m * (a.bsums[16 * i + 2 * j] + a.bsums[16 * i + 2 * j + 1]);
    }
    acc += a.d[i] * (F16ToF32(b[i].d) * sum_q - F16ToF32(b[i].dmin) * sum_m);
  }
  return acc;
}

float DotQ6_K(const uint8_t* w, const Q8KRow& a, int64_t n) {
  const auto* b = reinterpret_cast<const BlockQ6_K*>(w);
  float acc = 0.0f;
  for (int64_t i = 0; i < n / 256; ++i) {
    const int8_t* q = a.qs + 256 * i;
    int32_t total = 0;
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = b[i].ql + 64 * half;
      const uint8_t* qh = b[i].qh + 32 * half;
      const int8_t* qa = q + 128 * half;
      int32_t s[8] = {};  // per group of 16 within this half
      for (int l = 0; l < 32; ++l) {
        const int c0 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int c1 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int c2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int c3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        s[l / 16 + 0] += c0 * qa[l];
        s[l / 16 + 2] += c1 * qa[l + 32];
        s[l / 16 + 4] += c2 * qa[l + 64];
        s[l / 16 + 6] += c3 * qa[l + 96];
      }
      for (int g = 0; g < 8; ++g) total += b[i].scales[8 * half + g] * s[g];
    }
    acc += a.d[i] * F16ToF32(b[i].d) * static_cast<float>(total);
  }
  return acc;
}

// Against kQ8 activations (contiguous, one scale per 32): each group of 16 sums
// q * a, and the min term uses the group's activation sum.
float DotLQ2(const uint8_t* w, const Q8Row& a, int64_t n) {
  const auto* b = reinterpret_cast<const BlockLQ2*>(w);
  float acc = 0.0f;
  for (int64_t i = 0; i < n / 256; ++i) {
    const int8_t* q = a.qs + 256 * i;
    float sum_q = 0.0f, sum_m = 0.0f;
    for (int g = 0; g < 16; ++g) {
      int32_t s = 0, sa = 0;
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * g + l;
        s += ((b[i].qs[LQ2Byte(e)] >> LQ2Shift(e)) & 3) * q[e];
        sa += q[e];
      }
      const float da = a.d[8 * i + g / 2];
      sum_q += da * static_cast<float>((b[i].scales[g] & 15) * s);
      sum_m += da * static_cast<float>((b[i].scales[g] >> 4) * sa);
    }
    acc += F16ToF32(b[i].d) * sum_q - F16ToF32(b[i].dmin) * sum_m;
  }
  return acc;
}

template <typename RowFn>
void ForEachOutput(const GemmArgs& a, RowFn fn) {
  for (int64_t t = 0; t < a.n_tok; ++t)
    for (int64_t r = 0; r < a.n_rows; ++r)
      a.y[t * a.y_stride + r] = fn(a.w + r * a.w_row_bytes, t);
}

const float* F32At(const GemmArgs& a, int64_t t) {
  return reinterpret_cast<const float*>(a.act + t * a.act_layout.row_bytes);
}

void GemmF32(const GemmArgs& a) {
  ForEachOutput(a, [&](const uint8_t* w, int64_t t) { return DotF32(w, F32At(a, t), a.n_in); });
}
void GemmF16(const GemmArgs& a) {
  ForEachOutput(a, [&](const uint8_t* w, int64_t t) { return DotF16(w, F32At(a, t), a.n_in); });
}
void GemmBf16(const GemmArgs& a) {
  ForEachOutput(a, [&](const uint8_t* w, int64_t t) { return DotBf16(w, F32At(a, t), a.n_in); });
}
void GemmQ8_0(const GemmArgs& a) {
  ForEachOutput(a, [&](const uint8_t* w, int64_t t) { return DotQ8_0(w, Q8At(a, t), a.n_in); });
}
void GemmQ4_0(const GemmArgs& a) {
  ForEachOutput(a, [&](const uint8_t* w, int64_t t) { return DotQ4_0(w, Q8At(a, t), a.n_in); });
}
void GemmQ4_K(const GemmArgs& a) {
  ForEachOutput(a, [&](const uint8_t* w, int64_t t) { return DotQ4_K(w, Q8KAt(a, t), a.n_in); });
}
void GemmQ6_K(const GemmArgs& a) {
  ForEachOutput(a, [&](const uint8_t* w, int64_t t) { return DotQ6_K(w, Q8KAt(a, t), a.n_in); });
}

}  // namespace

void ScalarGemmLQ2(const GemmArgs& a) {
  ForEachOutput(a, [&](const uint8_t* w, int64_t t) { return DotLQ2(w, Q8At(a, t), a.n_in); });
}

const KernelSet& ScalarKernels() {
  static const KernelSet kSet = {{
      {ActFormat::kF32, GemmF32, 1},
      {ActFormat::kF32, GemmF16, 1},
      {ActFormat::kF32, GemmBf16, 1},
      {ActFormat::kQ8, GemmQ8_0, 1},
      {ActFormat::kQ8, GemmQ4_0, 1},
      {ActFormat::kQ8K, GemmQ4_K, 1},
      {ActFormat::kQ8K, GemmQ6_K, 1},
      {ActFormat::kQ8, ScalarGemmLQ2, 1},
  }};
  return kSet;
}

}  // namespace tierlm
