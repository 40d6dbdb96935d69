#include "kernels/ops.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu_features.h"

namespace tierlm {

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  // Eight partial sums: vectorizable and a little more accurate than one running sum.
  float part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) part[k] += x[i + k] * x[i + k];
  double sum = 0.0;
  for (int k = 0; k < 8; ++k) sum += part[k];
  for (; i < n; ++i) sum += double(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(sum / n + eps));
  for (i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

void Softmax(float* x, int64_t n) {
  const float max = *std::max_element(x, x + n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void SwiGluAvx512(const float* gate, const float* up, float* out, int64_t n);  // ops_avx512.cpp

void SwiGlu(const float* gate, const float* up, float* out, int64_t n) {
  if (UsesAvx512(ActiveKernelPath())) return SwiGluAvx512(gate, up, out, n);
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void Add(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void RopeInvFreq(float base, int64_t n_rot, float* inv_freq) {
  for (int64_t i = 0; i < n_rot / 2; ++i)
    inv_freq[i] = static_cast<float>(std::pow(double(base), -2.0 * i / n_rot));
}

void Rope(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos, float freq_scale,
          const float* inv_freq, bool neox) {
  const int64_t half = n_rot / 2;
  // cos/sin per pair, shared by every head. head_dim is at most a few hundred.
  constexpr int64_t kMaxPairs = 512;
  float cos_k[kMaxPairs], sin_k[kMaxPairs];
  for (int64_t k = 0; k < half; ++k) {
    const float theta = static_cast<float>(pos) * freq_scale * inv_freq[k];
    cos_k[k] = std::cos(theta);
    sin_k[k] = std::sin(theta);
  }
  const int64_t stride = neox ? half : 1;  // distance between a pair's two elements
  for (int64_t h = 0; h < n_head; ++h) {
    float* v = x + h * head_dim;
    for (int64_t k = 0; k < half; ++k) {
      const int64_t i0 = neox ? k : 2 * k;
      const float a = v[i0], b = v[i0 + stride];
      v[i0] = a * cos_k[k] - b * sin_k[k];
      v[i0 + stride] = a * sin_k[k] + b * cos_k[k];
    }
  }
}

}  // namespace tierlm
