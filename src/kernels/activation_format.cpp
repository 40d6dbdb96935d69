#include "kernels/activation_format.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu_features.h"
#include "kernels/quant.h"

namespace tierlm {
namespace {

int64_t RoundUp64(int64_t n) { return (n + 63) / 64 * 64; }

// Quantizes 32 * nb floats to int8 blocks: d[b] = amax / 127, sum[b] = sum of the qs.
void QuantizeBlocks(const float* x, int64_t n_elems, int64_t block, int8_t* qs, float* d,
                    int32_t* sum) {
  for (int64_t b = 0; b * block < n_elems; ++b) {
    const float* xb = x + b * block;
    float amax = 0.0f;
    for (int64_t j = 0; j < block; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float scale = amax / 127.0f;
    const float inv = scale != 0.0f ? 127.0f / amax : 0.0f;
    int32_t s = 0;
    for (int64_t j = 0; j < block; ++j) {
      const int q = static_cast<int>(std::nearbyint(xb[j] * inv));
      qs[b * block + j] = static_cast<int8_t>(q);
      s += q;
    }
    d[b] = scale;
    if (sum) sum[b] = s;
  }
}

}  // namespace

ActLayout GetActLayout(ActFormat format, int64_t n_in) {
  switch (format) {
    case ActFormat::kF32:
      return {RoundUp64(n_in * 4), 0, 0};
    case ActFormat::kBf16:
      return {RoundUp64(n_in * 2), 0, 0};
    case ActFormat::kBf16Chains:
      return {RoundUp64(16 * ((n_in + 31) / 32) * 4), 0, 0};
    case ActFormat::kQ8:
    case ActFormat::kQ8U:
    case ActFormat::kQ8Pair: {
      const int64_t nb = (n_in / 32 + 1) / 2 * 2;
      const int64_t d_off = 32 * nb;
      const int64_t sum_off = d_off + RoundUp64(nb * 4);
      return {sum_off + RoundUp64(nb * 4), d_off, sum_off};
    }
    case ActFormat::kQ8K: {
      const int64_t d_off = RoundUp64(n_in);
      const int64_t sum_off = d_off + RoundUp64(n_in / 256 * 4);
      return {sum_off + RoundUp64(n_in / 16 * 2), d_off, sum_off};
    }
    case ActFormat::kQ8KU:
    case ActFormat::kQ8KS: {
      const int64_t d_off = RoundUp64(n_in);
      const int64_t sum_off = d_off + RoundUp64(n_in / 256 * 4);
      return {sum_off + RoundUp64(n_in / 32 * 2), d_off, sum_off};
    }
    case ActFormat::kQ8LQ2: {
      const int64_t d_off = RoundUp64(n_in);
      const int64_t sum_off = d_off + RoundUp64(n_in / 16 * 4);
      return {sum_off + RoundUp64(n_in / 16 * 4), d_off, sum_off};
    }
  }
  return {0, 0, 0};
}

void ConvertActivationRow(ActFormat format, const float* x, int64_t n_in, uint8_t* dst) {
  if (UsesAvx512(ActiveKernelPath()) && ConvertActivationRowAvx512(format, x, n_in, dst)) return;
  const ActLayout layout = GetActLayout(format, n_in);
  std::memset(dst, 0, layout.row_bytes);
  switch (format) {
    case ActFormat::kF32:
      std::memcpy(dst, x, n_in * 4);
      return;
    case ActFormat::kBf16: {
      auto* h = reinterpret_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n_in; ++i) h[i] = F32ToBf16(x[i]);
      return;
    }
    case ActFormat::kBf16Chains: {
      auto* h = reinterpret_cast<uint16_t*>(dst);
      const int64_t n_pairs = (n_in + 1) / 2, p = (n_in + 31) / 32;
      for (int64_t j = 0; j < n_pairs; ++j) {
        uint16_t* slot = h + 2 * ((j % 16) * p + j / 16);
        slot[0] = F32ToBf16(x[2 * j]);
        slot[1] = 2 * j + 1 < n_in ? F32ToBf16(x[2 * j + 1]) : 0;
      }
      return;
    }
    case ActFormat::kQ8:
    case ActFormat::kQ8Pair: {
      auto* qs = reinterpret_cast<int8_t*>(dst);
      QuantizeBlocks(x, n_in, 32, qs, reinterpret_cast<float*>(dst + layout.d_offset),
                     reinterpret_cast<int32_t*>(dst + layout.sum_offset));
      if (format == ActFormat::kQ8Pair) {
        int8_t tmp[64];
        for (int64_t p = 0; p < layout.d_offset; p += 64) {
          std::memcpy(tmp, qs + p, 64);
          std::memcpy(qs + p + 16, tmp + 32, 16);
          std::memcpy(qs + p + 32, tmp + 16, 16);
        }
      }
      return;
    }
    case ActFormat::kQ8K: {
      auto* qs = reinterpret_cast<int8_t*>(dst);
      QuantizeBlocks(x, n_in, 256, qs, reinterpret_cast<float*>(dst + layout.d_offset), nullptr);
      auto* bsums = reinterpret_cast<int16_t*>(dst + layout.sum_offset);
      for (int64_t g = 0; g < n_in / 16; ++g) {
        int s = 0;
        for (int j = 0; j < 16; ++j) s += qs[16 * g + j];
        bsums[g] = static_cast<int16_t>(s);
      }
      return;
    }
    case ActFormat::kQ8U: {
      auto* qs = reinterpret_cast<int8_t*>(dst);
      QuantizeBlocks(x, n_in, 32, qs, reinterpret_cast<float*>(dst + layout.d_offset), nullptr);
      for (int64_t i = 0; i < n_in; ++i) dst[i] ^= 0x80;
      return;
    }
    case ActFormat::kQ8KU:
    case ActFormat::kQ8KS: {
      auto* qs = reinterpret_cast<int8_t*>(dst);
      QuantizeBlocks(x, n_in, 256, qs, reinterpret_cast<float*>(dst + layout.d_offset), nullptr);
      auto* sum32 = reinterpret_cast<int16_t*>(dst + layout.sum_offset);
      for (int64_t g = 0; g < n_in / 32; ++g) {
        int s = 0;
        for (int j = 0; j < 32; ++j) s += qs[32 * g + j];
        sum32[g] = static_cast<int16_t>(s);
      }
      if (format == ActFormat::kQ8KU)
        for (int64_t i = 0; i < n_in; ++i) dst[i] ^= 0x80;
      return;
    }
    case ActFormat::kQ8LQ2: {
      int8_t qs[256];
      float d[8];
      auto* out = reinterpret_cast<int8_t*>(dst);
      auto* d16 = reinterpret_cast<float*>(dst + layout.d_offset);
      auto* dsum16 = reinterpret_cast<float*>(dst + layout.sum_offset);
      for (int64_t b = 0; b < n_in / 256; ++b) {
        QuantizeBlocks(x + 256 * b, 256, 32, qs, d, nullptr);
        for (int g = 0; g < 16; ++g) {
          int s = 0;
          for (int l = 0; l < 16; ++l) {
            const int e = 16 * g + l;
            out[256 * b + 64 * ((e % 16) / 4) + 4 * g + e % 4] = qs[e];
            s += qs[e];
          }
          d16[16 * b + g] = d[g / 2];
          dsum16[16 * b + g] = d[g / 2] * static_cast<float>(s);
        }
      }
      return;
    }
  }
}

}  // namespace tierlm
