// Fused CPU kernels for MaxBlurPool (convtwist_zoo/xresnet.py): a 3x3 max pool at stride 1 (padding 1), then the
// 3x3 binomial blur [1 2 1]/4 x [1 2 1]/4 at stride 2 with reflect padding 1. Plain PyTorch spends most of the time
// in the max pool's backward (an int64 index per element, then a scatter) and the blur's depthwise convolution; here
// the forward is two passes and keeps a one-byte window position per element, and the backward is two gathers.
// Tensors are NHWC (channels_last).
#include <algorithm>
#include <vector>

#include <ATen/Parallel.h>

#include "nhwc.h"

namespace {

using convtwist_zoo::acc_t;

constexpr float kBlur[3] = {0.25f, 0.5f, 0.25f};

// Reflect padding of 1: index -1 reads 1, index n reads n - 2.
inline int64_t reflect(int64_t i, int64_t n) { return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i); }

// The rows (or columns) of the max-pooled map an output index i reads with weights kBlur: 2i-1, 2i, 2i+1 reflected.
struct Taps {
  int64_t at[3];
};

std::vector<Taps> blur_taps(int64_t out, int64_t n) {
  std::vector<Taps> taps(out);
  for (int64_t i = 0; i < out; ++i)
    for (int a = 0; a < 3; ++a) taps[i].at[a] = reflect(2 * i - 1 + a, n);
  return taps;
}

// The transpose: for every pooled index p, the output indices that read it and the summed weight of each.
std::vector<std::vector<std::pair<int64_t, float>>> blur_readers(int64_t out, int64_t n) {
  std::vector<std::vector<std::pair<int64_t, float>>> readers(n);
  for (int64_t i = 0; i < out; ++i)
    for (int a = 0; a < 3; ++a) {
      auto& list = readers[reflect(2 * i - 1 + a, n)];
      if (!list.empty() && list.back().first == i) list.back().second += kBlur[a];
      else list.emplace_back(i, kBlur[a]);
    }
  return readers;
}

// m[n, h, w, c] = max of x over the 3x3 window at (h, w) clipped to the image; pos = the window position of the
// first maximum in row-major order, as torch's max_pool2d picks it (a NaN wins, the last one). The running maximum
// and its position are float lanes updated by selects, so the channel loop vectorises.
template <typename T>
void maxpool_kernel(const T* x, T* m, uint8_t* pos, int64_t N, int64_t C, int64_t H, int64_t W) {
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> best(C), codes(C);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / H, h = row % H;
      const int64_t h0 = std::max<int64_t>(h - 1, 0), h1 = std::min<int64_t>(h + 1, H - 1);
      for (int64_t w = 0; w < W; ++w) {
        const int64_t w0 = std::max<int64_t>(w - 1, 0), w1 = std::min<int64_t>(w + 1, W - 1);
        float* b = best.data();
        float* k = codes.data();
        bool start = true;
        for (int64_t ih = h0; ih <= h1; ++ih)
          for (int64_t iw = w0; iw <= w1; ++iw) {
            const T* src = x + ((n * H + ih) * W + iw) * C;
            const float code = static_cast<float>((ih - h + 1) * 3 + (iw - w + 1));
            if (start) {
              for (int64_t c = 0; c < C; ++c) b[c] = static_cast<float>(src[c]), k[c] = code;
              start = false;
              continue;
            }
            for (int64_t c = 0; c < C; ++c) {
              const float v = static_cast<float>(src[c]);
              const bool take = v > b[c] || v != v;
              b[c] = take ? v : b[c];
              k[c] = take ? code : k[c];
            }
          }
        T* dst = m + (row * W + w) * C;
        for (int64_t c = 0; c < C; ++c) dst[c] = static_cast<T>(b[c]);
        if (pos) {
          uint8_t* p = pos + (row * W + w) * C;
          for (int64_t c = 0; c < C; ++c) p[c] = static_cast<uint8_t>(k[c]);
        }
      }
    }
  });
}

// y[n, i, j, c] = sum over a, b of kBlur[a] kBlur[b] m[n, reflect(2i-1+a), reflect(2j-1+b), c]
template <typename T>
void blur_kernel(const T* m, T* y, int64_t N, int64_t C, int64_t H, int64_t W, int64_t HO, int64_t WO) {
  const auto rows = blur_taps(HO, H), cols = blur_taps(WO, W);
  at::parallel_for(0, N * HO, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t<T>> acc(C);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / HO, i = row % HO;
      for (int64_t j = 0; j < WO; ++j) {
        std::fill(acc.begin(), acc.end(), acc_t<T>(0));
        for (int a = 0; a < 3; ++a)
          for (int b = 0; b < 3; ++b) {
            const acc_t<T> wt = kBlur[a] * kBlur[b];
            const T* src = m + ((n * H + rows[i].at[a]) * W + cols[j].at[b]) * C;
            for (int64_t c = 0; c < C; ++c) acc[c] += wt * static_cast<acc_t<T>>(src[c]);
          }
        T* dst = y + (row * WO + j) * C;
        for (int64_t c = 0; c < C; ++c) dst[c] = static_cast<T>(acc[c]);
      }
    }
  });
}

// gm[n, p, q, c] = the blur's transpose applied to gy (float), gathered per pooled pixel
template <typename T>
void blur_backward_kernel(const T* gy, float* gm, int64_t N, int64_t C, int64_t H, int64_t W, int64_t HO,
                          int64_t WO) {
  const auto rows = blur_readers(HO, H), cols = blur_readers(WO, W);
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / H, p = row % H;
      for (int64_t q = 0; q < W; ++q) {
        float* dst = gm + (row * W + q) * C;
        std::fill(dst, dst + C, 0.0f);
        for (const auto& [i, wa] : rows[p])
          for (const auto& [j, wb] : cols[q]) {
            const float wt = wa * wb;
            const T* src = gy + ((n * HO + i) * WO + j) * C;
            for (int64_t c = 0; c < C; ++c) dst[c] += wt * static_cast<float>(src[c]);
          }
      }
    }
  });
}

// gx[n, h, w, c] = sum of gm over the windows whose maximum came from (h, w)
template <typename T>
void maxpool_backward_kernel(const float* gm, const uint8_t* pos, T* gx, int64_t N, int64_t C, int64_t H,
                             int64_t W) {
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(C);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / H, h = row % H;
      for (int64_t w = 0; w < W; ++w) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t ph = std::max<int64_t>(h - 1, 0); ph <= std::min<int64_t>(h + 1, H - 1); ++ph)
          for (int64_t pw = std::max<int64_t>(w - 1, 0); pw <= std::min<int64_t>(w + 1, W - 1); ++pw) {
            // (h, w) seen from the window centred at (ph, pw)
            const uint8_t code = static_cast<uint8_t>((h - ph + 1) * 3 + (w - pw + 1));
            const int64_t at = ((n * H + ph) * W + pw) * C;
            const uint8_t* p = pos + at;
            const float* g = gm + at;
            for (int64_t c = 0; c < C; ++c) acc[c] += p[c] == code ? g[c] : 0.0f;
          }
        T* dst = gx + (row * W + w) * C;
        for (int64_t c = 0; c < C; ++c) dst[c] = static_cast<T>(acc[c]);
      }
    }
  });
}

void check_input(const torch::Tensor& t, const char* name) {
  convtwist_zoo::check_nhwc(t, name);
  TORCH_CHECK(t.size(2) >= 2 && t.size(3) >= 2, name, " must be at least 2x2 (the blur pads by reflection)");
}

}  // namespace

// x (N, C, H, W) channels_last -> y (N, C, (H+1)/2, (W+1)/2) channels_last, and the max pool's window positions
// (N, C, H, W) uint8 channels_last when with_positions (for the backward), else an empty tensor
std::tuple<torch::Tensor, torch::Tensor> maxblur_forward(const torch::Tensor& x, bool with_positions) {
  check_input(x, "x");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t HO = (H - 1) / 2 + 1, WO = (W - 1) / 2 + 1;
  auto cl = x.options().memory_format(at::MemoryFormat::ChannelsLast);
  auto m = torch::empty({N, C, H, W}, cl);
  auto y = torch::empty({N, C, HO, WO}, cl);
  auto pos = torch::empty(with_positions ? at::IntArrayRef({N, C, H, W}) : at::IntArrayRef({0}),
                          with_positions ? cl.dtype(torch::kUInt8) : x.options().dtype(torch::kUInt8));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "maxblur_forward", [&] {
    maxpool_kernel<scalar_t>(x.data_ptr<scalar_t>(), m.data_ptr<scalar_t>(),
                             with_positions ? pos.data_ptr<uint8_t>() : nullptr, N, C, H, W);
    blur_kernel<scalar_t>(m.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), N, C, H, W, HO, WO);
  });
  return {y, pos};
}

// gy (N, C, HO, WO) channels_last, pos from maxblur_forward -> gx (N, C, H, W) channels_last, gy's dtype
torch::Tensor maxblur_backward(const torch::Tensor& gy, const torch::Tensor& pos) {
  TORCH_CHECK(gy.dim() == 4 && gy.is_contiguous(at::MemoryFormat::ChannelsLast), "gy must be channels_last 4-D");
  check_input(pos, "pos");
  TORCH_CHECK(pos.scalar_type() == torch::kUInt8, "pos must be uint8");
  const int64_t N = pos.size(0), C = pos.size(1), H = pos.size(2), W = pos.size(3);
  const int64_t HO = (H - 1) / 2 + 1, WO = (W - 1) / 2 + 1;
  TORCH_CHECK(gy.size(0) == N && gy.size(1) == C && gy.size(2) == HO && gy.size(3) == WO, "gy has the wrong shape");
  auto cl = gy.options().memory_format(at::MemoryFormat::ChannelsLast);
  auto gm = torch::empty({N, C, H, W}, cl.dtype(torch::kFloat));
  auto gx = torch::empty({N, C, H, W}, cl);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, gy.scalar_type(), "maxblur_backward", [&] {
    blur_backward_kernel<scalar_t>(gy.data_ptr<scalar_t>(), gm.data_ptr<float>(), N, C, H, W, HO, WO);
    maxpool_backward_kernel<scalar_t>(gm.data_ptr<float>(), pos.data_ptr<uint8_t>(), gx.data_ptr<scalar_t>(), N, C,
                                      H, W);
  });
  return gx;
}

TORCH_LIBRARY_FRAGMENT(convtwist_zoo, m) {
  m.def("maxblur_forward(Tensor x, bool with_positions) -> (Tensor, Tensor)");  // MaxBlurPool (NHWC)
  m.def("maxblur_backward(Tensor gy, Tensor pos) -> Tensor");                   // its input gradient
}

TORCH_LIBRARY_IMPL(convtwist_zoo, CPU, m) {
  m.impl("maxblur_forward", &maxblur_forward);
  m.impl("maxblur_backward", &maxblur_backward);
}
