#include <torch/extension.h>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <vector>
#include <ATen/Parallel.h>

static inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16; h *= 0x85EBCA6Bu; h ^= h >> 13; h *= 0xC2B2AE35u; h ^= h >> 16; return h;
}
static inline uint32_t keep_bits(int64_t i, uint32_t lo, uint32_t hi) {
  return fmix32(fmix32(uint32_t(i) * 0x9E3779B9u + lo) ^ hi);
}
static inline float bf16_to_float(uint16_t b) {
  uint32_t u = uint32_t(b) << 16; float f; std::memcpy(&f, &u, 4); return f;
}
static inline uint16_t float_to_bf16(float f) {  // round to nearest even, as c10::BFloat16
  uint32_t u; std::memcpy(&u, &f, 4); u += 0x7FFFu + ((u >> 16) & 1u); return uint16_t(u >> 16);
}

// Elements [begin, end): branch-free, so that the loops vectorise.
__attribute__((target_clones("avx512f", "avx2", "default")))
static void drop_f32(const float* x, float* y, int64_t begin, int64_t end, uint32_t lo,
                     uint32_t hi, uint32_t thr, float scale) {
  for (int64_t i = begin; i < end; ++i)
    y[i] = x[i] * (keep_bits(i, lo, hi) >= thr ? scale : 0.0f);
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static void drop_bf16(const uint16_t* x, uint16_t* y, int64_t begin, int64_t end, uint32_t lo,
                      uint32_t hi, uint32_t thr, float scale) {
  for (int64_t i = begin; i < end; ++i)
    y[i] = float_to_bf16(bf16_to_float(x[i]) * (keep_bits(i, lo, hi) >= thr ? scale : 0.0f));
}

torch::Tensor hash_dropout(torch::Tensor x, int64_t seed, int64_t threshold, double scale) {
  // element i is the i-th in memory: a channels-last tensor keeps its layout
  const bool dense = x.is_contiguous() || x.is_contiguous(at::MemoryFormat::ChannelsLast);
  auto xc = dense ? x : x.contiguous();
  auto y = torch::empty_like(xc);  // the same strides as xc
  const uint32_t lo = uint32_t(uint64_t(seed) & 0xFFFFFFFFu), hi = uint32_t(uint64_t(seed) >> 32);
  const uint32_t thr = uint32_t(threshold);
  const float s = float(scale);
  if (xc.scalar_type() == at::kFloat) {
    const float* in = xc.data_ptr<float>(); float* out = y.data_ptr<float>();
    at::parallel_for(0, xc.numel(), 1 << 16, [&](int64_t b, int64_t e) {
      drop_f32(in, out, b, e, lo, hi, thr, s); });
  } else if (xc.scalar_type() == at::kBFloat16) {
    auto in = reinterpret_cast<const uint16_t*>(xc.data_ptr<at::BFloat16>());
    auto out = reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>());
    at::parallel_for(0, xc.numel(), 1 << 16, [&](int64_t b, int64_t e) {
      drop_bf16(in, out, b, e, lo, hi, thr, s); });
  } else {
    TORCH_CHECK(false, "hash_dropout: float32 or bfloat16 tensors only");
  }
  return y;
}

// 2x2 max-pool, stride 2, channels-first, floor mode. idx holds the window position (0-3) of
// the first maximum in row-major order, NaN winning, as aten's max_pool2d.
template <typename T, typename Load>
static void pool_planes(const T* x, T* y, uint8_t* idx, int64_t p0, int64_t p1, int64_t H,
                        int64_t W, Load load) {
  const int64_t H2 = H / 2, W2 = W / 2;
  for (int64_t p = p0; p < p1; ++p) {
    const T* xp = x + p * H * W;
    T* yp = y + p * H2 * W2;
    uint8_t* ip = idx + p * H2 * W2;
    for (int64_t i = 0; i < H2; ++i) {
      const T* r0 = xp + 2 * i * W;
      const T* r1 = r0 + W;
      for (int64_t j = 0; j < W2; ++j) {
        const T v[4] = {r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]};
        int k = 0;
        float m = load(v[0]);
        for (int q = 1; q < 4; ++q) {
          const float f = load(v[q]);
          if (f > m || std::isnan(f)) { m = f; k = q; }
        }
        yp[i * W2 + j] = v[k];
        ip[i * W2 + j] = uint8_t(k);
      }
    }
  }
}

std::vector<torch::Tensor> max_pool2x2(torch::Tensor x) {
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous(), "max_pool2x2: a contiguous NCHW tensor");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto y = torch::empty({N, C, H / 2, W / 2}, x.options());
  auto idx = torch::empty({N, C, H / 2, W / 2}, x.options().dtype(torch::kUInt8));
  uint8_t* ip = idx.data_ptr<uint8_t>();
  if (x.scalar_type() == at::kFloat) {
    const float* in = x.data_ptr<float>(); float* out = y.data_ptr<float>();
    at::parallel_for(0, N * C, 16, [&](int64_t b, int64_t e) {
      pool_planes(in, out, ip, b, e, H, W, [](float v) { return v; }); });
  } else if (x.scalar_type() == at::kBFloat16) {
    auto in = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
    auto out = reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>());
    at::parallel_for(0, N * C, 16, [&](int64_t b, int64_t e) {
      pool_planes(in, out, ip, b, e, H, W, bf16_to_float); });
  } else {
    TORCH_CHECK(false, "max_pool2x2: float32 or bfloat16 tensors only");
  }
  return {y, idx};
}

// The gradient goes to the window position that won; the rest (and an odd last row or column)
// get zero, as in aten.
torch::Tensor max_pool2x2_backward(torch::Tensor grad, torch::Tensor idx, int64_t H, int64_t W) {
  auto g = grad.contiguous();
  const int64_t N = g.size(0), C = g.size(1), H2 = g.size(2), W2 = g.size(3);
  auto gx = torch::zeros({N, C, H, W}, g.options());
  const uint8_t* ip = idx.data_ptr<uint8_t>();
  const int64_t esize = g.element_size();
  const char* gp = static_cast<const char*>(g.data_ptr());
  char* xp = static_cast<char*>(gx.data_ptr());
  at::parallel_for(0, N * C, 16, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p)
      for (int64_t i = 0; i < H2; ++i)
        for (int64_t j = 0; j < W2; ++j) {
          const int64_t o = (p * H2 + i) * W2 + j;
          const int k = ip[o];
          const int64_t at = p * H * W + (2 * i + (k >> 1)) * W + 2 * j + (k & 1);
          std::memcpy(xp + at * esize, gp + o * esize, esize);
        }
  });
  return gx;
}
