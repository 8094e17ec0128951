// Fused CPU kernels for ConvTwist's 4-tap twist (see convtwist_zoo/layers.py, `_TwistConv`) and for its stacked
// variant (`_StackedTwistConv`: one convolution with main, x and y kernels, then the grid combine).
// Tensors are NHWC (channels_last); the tap differences are a matrix with one row per output pixel and columns
// (tap, input channel). Each kernel is one pass over memory where plain PyTorch ops need several.
#include <algorithm>

#include <ATen/Parallel.h>

#include "nhwc.h"

namespace {

using convtwist_zoo::acc_t;
using convtwist_zoo::check_nhwc;

// Free taps of an antisymmetric 3x3 kernel, (row, col); the mirror (2-r, 2-c) holds the negative.
constexpr int kTapR[4] = {0, 0, 0, 1};
constexpr int kTapC[4] = {0, 1, 2, 0};

template <typename T>
inline acc_t<T> ld(const T* p) { return static_cast<acc_t<T>>(*p); }

// diffs[n, oh, ow, t, c] = x[n, oh*s + r_t - 1, ow*s + c_t - 1, c] - x[n, oh*s + 1 - r_t, ow*s + 1 - c_t, c]
// (zero outside the image, as with padding 1).
template <typename T>
void diffs_kernel(const T* x, T* d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t HO, int64_t WO, int s) {
  at::parallel_for(0, N * HO, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / HO, oh = row % HO;
      for (int64_t ow = 0; ow < WO; ++ow) {
        T* out = d + ((row * WO) + ow) * 4 * C;
        for (int t = 0; t < 4; ++t) {
          const int64_t ha = oh * s + kTapR[t] - 1, wa = ow * s + kTapC[t] - 1;
          const int64_t hb = oh * s + 1 - kTapR[t], wb = ow * s + 1 - kTapC[t];
          const bool in_a = ha >= 0 && ha < H && wa >= 0 && wa < W;
          const bool in_b = hb >= 0 && hb < H && wb >= 0 && wb < W;
          const T* pa = x + ((n * H + ha) * W + wa) * C;
          const T* pb = x + ((n * H + hb) * W + wb) * C;
          T* o = out + t * C;
          if (in_a && in_b) {
            for (int64_t c = 0; c < C; ++c) o[c] = static_cast<T>(ld(pa + c) - ld(pb + c));
          } else if (in_a) {
            for (int64_t c = 0; c < C; ++c) o[c] = pa[c];
          } else if (in_b) {
            for (int64_t c = 0; c < C; ++c) o[c] = static_cast<T>(-ld(pb + c));
          } else {
            for (int64_t c = 0; c < C; ++c) o[c] = static_cast<T>(0);
          }
        }
      }
    }
  });
}

// The transpose of diffs_kernel, added into gx: every input pixel gathers the (at most 8) difference gradients it
// fed, so threads never write the same element.
template <typename T>
void scatter_kernel(const T* g, T* gx, int64_t N, int64_t C, int64_t H, int64_t W, int64_t HO, int64_t WO, int s) {
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t<T>> acc(C);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / H, h = row % H;
      for (int64_t w = 0; w < W; ++w) {
        T* dst = gx + ((row * W) + w) * C;
        for (int64_t c = 0; c < C; ++c) acc[c] = ld(dst + c);
        for (int t = 0; t < 4; ++t) {
          for (int sign = 0; sign < 2; ++sign) {
            // input (h, w) = (oh*s + dr - 1, ow*s + dc - 1) with (dr, dc) the tap (+) or its mirror (-)
            const int dr = sign == 0 ? kTapR[t] : 2 - kTapR[t];
            const int dc = sign == 0 ? kTapC[t] : 2 - kTapC[t];
            const int64_t ph = h + 1 - dr, pw = w + 1 - dc;
            if (ph < 0 || pw < 0 || ph % s || pw % s) continue;
            const int64_t oh = ph / s, ow = pw / s;
            if (oh >= HO || ow >= WO) continue;
            const T* src = g + (((n * HO + oh) * WO + ow) * 4 + t) * C;
            if (sign == 0) {
              for (int64_t c = 0; c < C; ++c) acc[c] += ld(src + c);
            } else {
              for (int64_t c = 0; c < C; ++c) acc[c] -= ld(src + c);
            }
          }
        }
        for (int64_t c = 0; c < C; ++c) dst[c] = static_cast<T>(acc[c]);
      }
    }
  });
}

// The coordinate grid 2*i/n - 1 at index i of n, rounded once from double like the PyTorch path's grid.
template <typename T>
inline acc_t<T> grid_value(int64_t i, int64_t n) {
  return static_cast<acc_t<T>>(static_cast<double>(2 * i) / n - 1);
}

// Calls fn(p, gx, gy) for every output pixel p (row-major over N, HO, WO) with the grids 2*j/WO - 1 and
// 2*i/HO - 1 at that pixel, in parallel over image rows: the loop every grid kernel below shares.
template <typename T, typename Fn>
void for_each_pixel(int64_t N, int64_t HO, int64_t WO, const Fn& fn) {
  at::parallel_for(0, N * HO, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const acc_t<T> gy = grid_value<T>(row % HO, HO);
      for (int64_t ow = 0; ow < WO; ++ow) fn(row * WO + ow, grid_value<T>(ow, WO), gy);
    }
  });
}

// out[p, f] = base[p, f] + gx * tw[p, f] + gy * tw[p, F + f], a pixel's row being base_stride values long in base
// and tw_stride in tw. The tap path adds in place (base = out, tw = the 2F-column twist matrix); the stacked path
// reads all three from one 3F-channel convolution output (base = y, tw = y + F).
template <typename T>
void combine_kernel(const T* base, int64_t base_stride, const T* tw, int64_t tw_stride, T* out, int64_t N, int64_t F,
                    int64_t HO, int64_t WO) {
  for_each_pixel<T>(N, HO, WO, [&](int64_t p, acc_t<T> gx, acc_t<T> gy) {
    const T* b = base + p * base_stride;
    const T* a = tw + p * tw_stride;
    T* o = out + p * F;
    for (int64_t f = 0; f < F; ++f) o[f] = static_cast<T>(ld(b + f) + gx * ld(a + f) + gy * ld(a + F + f));
  });
}

// Its transpose, the twist's gradient from the output's: gt[p] = [gx * g[p], gy * g[p]], preceded by g[p] itself
// when with_grad (the stacked path, whose convolution also made the main output).
template <typename T>
void grid_grad_kernel(const T* g, T* gt, int64_t N, int64_t F, int64_t HO, int64_t WO, bool with_grad) {
  const int64_t stride = (with_grad ? 3 : 2) * F, offset = with_grad ? F : 0;
  for_each_pixel<T>(N, HO, WO, [&](int64_t p, acc_t<T> gx, acc_t<T> gy) {
    const T* a = g + p * F;
    T* o = gt + p * stride;
    if (with_grad) std::copy(a, a + F, o);
    for (int64_t f = 0; f < F; ++f) {
      const acc_t<T> v = ld(a + f);
      o[offset + f] = static_cast<T>(gx * v);
      o[offset + F + f] = static_cast<T>(gy * v);
    }
  });
}

// The layer's kernels in the compute dtype from its fp32 parameters, in one pass (fused_kernels' ops below):
// main[f, c] = W + antisym(cx[f] * Wx + cy[f] * Wy) as 9 values, and either taps = [Wx; Wy] (the tap path) or, when
// kx/ky are given, the full antisymmetric kernels antisym(Wx), antisym(Wy) (the stacked path). antisym(a) is
// [a0 a1 a2 a3 0 -a3 -a2 -a1 -a0], as in layers.antisymmetric_kernel. W's element (f, c, k) lies at
// f * 9C + c * wc + k * wk: contiguous (wc = 9, wk = 1) or channels_last (wc = 1, wk = C), as a model's .to() left it;
// main's at f * 9C + c * mc + k * mk likewise. taps are tap-major, (2F, 4, C): the twist GEMM's matrix as it is used,
// with no transposing copy (a strided (2F, C, 4) -> (2F, 4C) copy cost 6 ms per 512-channel layer and step).
template <typename T>
void prepare_kernel(const float* w, int64_t wc, int64_t wk, const float* wx, const float* wy, const float* cx,
                    const float* cy, T* main, int64_t mc, int64_t mk, T* taps, T* kx, T* ky, int64_t F, int64_t C) {
  at::parallel_for(0, F, 1, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) {
      const float* k = w + f * 9 * C;
      T* m = main + f * 9 * C;
      const float* a = wx + f * C * 4;
      const float* b = wy + f * C * 4;
      // one tap (and its mirror) at a time over all input channels: with channels_last kernels every access
      // walks memory in order
      for (int t = 0; t < 4; ++t) {
        const float* k0 = k + t * wk;
        const float* k8 = k + (8 - t) * wk;
        T* m0 = m + t * mk;
        T* m8 = m + (8 - t) * mk;
        for (int64_t c = 0; c < C; ++c) {
          const float folded = cx[f] * a[c * 4 + t] + cy[f] * b[c * 4 + t];
          m0[c * mc] = static_cast<T>(k0[c * wc] + folded);
          m8[c * mc] = static_cast<T>(k8[c * wc] - folded);
        }
      }
      for (int64_t c = 0; c < C; ++c) m[4 * mk + c * mc] = static_cast<T>(k[4 * wk + c * wc]);
      if (taps != nullptr) {
        T* tx = taps + f * 4 * C;
        T* ty = taps + (F + f) * 4 * C;
        for (int t = 0; t < 4; ++t)
          for (int64_t c = 0; c < C; ++c) {
            tx[t * C + c] = static_cast<T>(a[c * 4 + t]);
            ty[t * C + c] = static_cast<T>(b[c * 4 + t]);
          }
      } else {
        for (int64_t c = 0; c < C; ++c) {
          T* ox = kx + (f * C + c) * 9;
          T* oy = ky + (f * C + c) * 9;
          for (int t = 0; t < 4; ++t) {
            ox[t] = static_cast<T>(a[c * 4 + t]);
            ox[8 - t] = static_cast<T>(-a[c * 4 + t]);
            oy[t] = static_cast<T>(b[c * 4 + t]);
            oy[8 - t] = static_cast<T>(-b[c * 4 + t]);
          }
          ox[4] = oy[4] = static_cast<T>(0);
        }
      }
    }
  });
}

// Its transpose: the parameters' fp32 gradients from the kernels' (g_main, and g_taps or g_kx/g_ky). The adjoint
// of antisym is d_t = g[t] - g[8 - t]; the centres' gradients are sums over one output channel, so threads that
// split the output channels never share a sum. g_main and g_taps are read through their strides (gs: f, c, k of
// g_main; ts: row, c, t of g_taps), so the layouts convolution_backward and the GEMM return need no copy; gw is laid
// out like W (wc, wk as above).
template <typename T>
void prepare_backward_kernel(const T* gmain, const int64_t* gs, const T* gtaps, const int64_t* ts, const T* gkx,
                             const T* gky, const float* wx, const float* wy, const float* cx, const float* cy,
                             float* gw, int64_t wc, int64_t wk, float* gwx, float* gwy, float* gcx, float* gcy,
                             int64_t F, int64_t C) {
  at::parallel_for(0, F, 1, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) {
      const T* g = gmain + f * gs[0];
      float* o = gw + f * 9 * C;
      const float* a = wx + f * C * 4;
      const float* b = wy + f * C * 4;
      float* oa = gwx + f * C * 4;
      float* ob = gwy + f * C * 4;
      float sum_x = 0.f, sum_y = 0.f;
      for (int t = 0; t < 4; ++t) {  // one tap (and its mirror) over all input channels, as in prepare_kernel
        const T* g0 = g + t * gs[2];
        const T* g8 = g + (8 - t) * gs[2];
        float* o0 = o + t * wk;
        float* o8 = o + (8 - t) * wk;
        const T* ex = gtaps != nullptr ? gtaps + f * ts[0] + t * ts[2] : nullptr;
        const T* ey = gtaps != nullptr ? gtaps + (F + f) * ts[0] + t * ts[2] : nullptr;
        for (int64_t c = 0; c < C; ++c) {
          const float v0 = static_cast<float>(g0[c * gs[1]]), v8 = static_cast<float>(g8[c * gs[1]]);
          o0[c * wc] = v0;
          o8[c * wc] = v8;
          const float d = v0 - v8;
          float dx, dy;
          if (ex != nullptr) {
            dx = static_cast<float>(ex[c * ts[1]]);
            dy = static_cast<float>(ey[c * ts[1]]);
          } else {
            const int64_t i = (f * C + c) * 9;
            dx = static_cast<float>(gkx[i + t]) - static_cast<float>(gkx[i + 8 - t]);
            dy = static_cast<float>(gky[i + t]) - static_cast<float>(gky[i + 8 - t]);
          }
          oa[c * 4 + t] = cx[f] * d + dx;
          ob[c * 4 + t] = cy[f] * d + dy;
          sum_x += d * a[c * 4 + t];
          sum_y += d * b[c * 4 + t];
        }
      }
      for (int64_t c = 0; c < C; ++c) o[4 * wk + c * wc] = static_cast<float>(g[4 * gs[2] + c * gs[1]]);
      gcx[f] = sum_x;
      gcy[f] = sum_y;
    }
  });
}

}  // namespace

// x: (N, C, H, W) channels_last -> (N*HO*WO, 4*C)
torch::Tensor twist_diffs(const torch::Tensor& x, int64_t stride) {
  check_nhwc(x, "x");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t HO = (H - 1) / stride + 1, WO = (W - 1) / stride + 1;
  auto d = torch::empty({N * HO * WO, 4 * C}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "twist_diffs", [&] {
    diffs_kernel<scalar_t>(x.data_ptr<scalar_t>(), d.data_ptr<scalar_t>(), N, C, H, W, HO, WO, stride);
  });
  return d;
}

// grad_x (N, C, H, W) channels_last, updated in place with the transpose of twist_diffs applied to g
void twist_scatter_add_(const torch::Tensor& grad_x, const torch::Tensor& g, int64_t stride) {
  check_nhwc(grad_x, "grad_x");
  TORCH_CHECK(g.is_contiguous() && g.scalar_type() == grad_x.scalar_type(), "g must be contiguous, same dtype");
  const int64_t N = grad_x.size(0), C = grad_x.size(1), H = grad_x.size(2), W = grad_x.size(3);
  const int64_t HO = (H - 1) / stride + 1, WO = (W - 1) / stride + 1;
  TORCH_CHECK(g.numel() == N * HO * WO * 4 * C, "g has the wrong size");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "twist_scatter", [&] {
    scatter_kernel<scalar_t>(g.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(), N, C, H, W, HO, WO, stride);
  });
}

// out (N, F, HO, WO) channels_last += grids * twist (N*HO*WO, 2F)
void twist_combine_(const torch::Tensor& out, const torch::Tensor& tw) {
  check_nhwc(out, "out");
  TORCH_CHECK(tw.is_contiguous() && tw.scalar_type() == out.scalar_type(), "tw must be contiguous, same dtype");
  const int64_t N = out.size(0), F = out.size(1), HO = out.size(2), WO = out.size(3);
  TORCH_CHECK(tw.numel() == N * HO * WO * 2 * F, "tw has the wrong size");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, out.scalar_type(), "twist_combine", [&] {
    scalar_t* o = out.data_ptr<scalar_t>();
    combine_kernel<scalar_t>(o, F, tw.data_ptr<scalar_t>(), 2 * F, o, N, F, HO, WO);
  });
}

// grad (N, F, HO, WO) channels_last -> (N*HO*WO, 2F): [gx * grad, gy * grad]
torch::Tensor twist_grid_grad(const torch::Tensor& grad) {
  check_nhwc(grad, "grad");
  const int64_t N = grad.size(0), F = grad.size(1), HO = grad.size(2), WO = grad.size(3);
  auto gt = torch::empty({N * HO * WO, 2 * F}, grad.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "twist_grid_grad", [&] {
    grid_grad_kernel<scalar_t>(grad.data_ptr<scalar_t>(), gt.data_ptr<scalar_t>(), N, F, HO, WO, false);
  });
  return gt;
}

// y (N, 3F, HO, WO) channels_last -> out (N, F, HO, WO) channels_last
torch::Tensor twist_combine3(const torch::Tensor& y) {
  check_nhwc(y, "y");
  TORCH_CHECK(y.size(1) % 3 == 0, "y must have 3*F channels");
  const int64_t N = y.size(0), F = y.size(1) / 3, HO = y.size(2), WO = y.size(3);
  auto out = torch::empty({N, F, HO, WO}, y.options().memory_format(at::MemoryFormat::ChannelsLast));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, y.scalar_type(), "twist_combine3", [&] {
    const scalar_t* src = y.data_ptr<scalar_t>();
    combine_kernel<scalar_t>(src, 3 * F, src + F, 3 * F, out.data_ptr<scalar_t>(), N, F, HO, WO);
  });
  return out;
}

// grad (N, F, HO, WO) channels_last -> (N, 3F, HO, WO) channels_last: [grad, gx * grad, gy * grad]
torch::Tensor twist_grid_grad3(const torch::Tensor& grad) {
  check_nhwc(grad, "grad");
  const int64_t N = grad.size(0), F = grad.size(1), HO = grad.size(2), WO = grad.size(3);
  auto g3 = torch::empty({N, 3 * F, HO, WO}, grad.options().memory_format(at::MemoryFormat::ChannelsLast));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "twist_grid_grad3", [&] {
    grid_grad_kernel<scalar_t>(grad.data_ptr<scalar_t>(), g3.data_ptr<scalar_t>(), N, F, HO, WO, true);
  });
  return g3;
}

// (wc, wk) of a contiguous or channels_last (F, C, 3, 3) kernel
std::pair<int64_t, int64_t> kernel_strides(const torch::Tensor& w) {
  if (w.is_contiguous()) return {9, 1};
  TORCH_CHECK(w.is_contiguous(at::MemoryFormat::ChannelsLast), "weight must be contiguous or channels_last");
  return {1, w.size(1)};
}

void check_params(const torch::Tensor& w, const torch::Tensor& wx, const torch::Tensor& wy, const torch::Tensor& cx,
                  const torch::Tensor& cy) {
  const int64_t F = w.size(0), C = w.size(1);
  kernel_strides(w);
  TORCH_CHECK(w.scalar_type() == at::kFloat, "ConvTwist parameters must be float32");
  for (const auto* t : {&wx, &wy, &cx, &cy}) {
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->is_contiguous(),
                "ConvTwist parameters must be contiguous float32");
  }
  TORCH_CHECK(w.dim() == 4 && w.size(2) == 3 && w.size(3) == 3, "weight must be (F, C, 3, 3)");
  TORCH_CHECK(wx.sizes() == at::IntArrayRef({F, C, 4}) && wy.sizes() == wx.sizes(), "taps must be (F, C, 4)");
  TORCH_CHECK(cx.numel() == F && cy.numel() == F, "centres must have F values");
}

// (weight, weight_x, weight_y, center_x, center_y) fp32 -> (main (F, C, 3, 3) channels_last, the layout the
// channels_last convolution and its backward take without a copy; taps (2F, C, 4) viewed from tap-major (2F, 4, C)
// memory) in dtype
std::tuple<torch::Tensor, torch::Tensor> twist_prepare_taps(const torch::Tensor& w, const torch::Tensor& wx,
                                                            const torch::Tensor& wy, const torch::Tensor& cx,
                                                            const torch::Tensor& cy, at::ScalarType dtype) {
  check_params(w, wx, wy, cx, cy);
  const int64_t F = w.size(0), C = w.size(1);
  auto main = torch::empty({F, C, 3, 3}, w.options().dtype(dtype).memory_format(at::MemoryFormat::ChannelsLast));
  auto taps = torch::empty({2 * F, 4, C}, w.options().dtype(dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "twist_prepare_taps", [&] {
    const auto [wc, wk] = kernel_strides(w);
    prepare_kernel<scalar_t>(w.data_ptr<float>(), wc, wk, wx.data_ptr<float>(), wy.data_ptr<float>(),
                             cx.data_ptr<float>(), cy.data_ptr<float>(), main.data_ptr<scalar_t>(), 1, C,
                             taps.data_ptr<scalar_t>(), nullptr, nullptr, F, C);
  });
  return {main, taps.transpose(1, 2)};
}

// the same parameters -> (3F, C, 3, 3) in dtype: [main; antisym(Wx); antisym(Wy)] (the stacked path's kernel)
torch::Tensor twist_prepare_stacked(const torch::Tensor& w, const torch::Tensor& wx, const torch::Tensor& wy,
                                    const torch::Tensor& cx, const torch::Tensor& cy, at::ScalarType dtype) {
  check_params(w, wx, wy, cx, cy);
  const int64_t F = w.size(0), C = w.size(1);
  auto k = torch::empty({3 * F, C, 3, 3}, w.options().dtype(dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "twist_prepare_stacked", [&] {
    scalar_t* out = k.data_ptr<scalar_t>();
    const auto [wc, wk] = kernel_strides(w);
    prepare_kernel<scalar_t>(w.data_ptr<float>(), wc, wk, wx.data_ptr<float>(), wy.data_ptr<float>(),
                             cx.data_ptr<float>(), cy.data_ptr<float>(), out, 9, 1, nullptr, out + F * C * 9,
                             out + 2 * F * C * 9, F, C);
  });
  return k;
}

// gradients of the parameters from g (the main kernel's (F, C, 3, 3) and g_taps (2F, C, 4), any strides, or the
// stacked kernel's contiguous (3F, C, 3, 3) with g_taps empty); W's gradient channels_last when W is
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor> twist_prepare_backward(
    const torch::Tensor& g, const torch::Tensor& g_taps, const torch::Tensor& wx, const torch::Tensor& wy,
    const torch::Tensor& cx, const torch::Tensor& cy, bool channels_last) {
  const int64_t F = wx.size(0), C = wx.size(1);
  const bool stacked = g.size(0) == 3 * F;
  TORCH_CHECK(g.dim() == 4 && g.size(1) == C && g.size(2) == 3 && g.size(3) == 3 && (stacked || g.size(0) == F),
              "g must be (F or 3F, C, 3, 3)");
  TORCH_CHECK(!stacked || g.is_contiguous(), "the stacked kernel's gradient must be contiguous");
  TORCH_CHECK(stacked || (g_taps.dim() == 3 && g_taps.size(0) == 2 * F && g_taps.size(1) == C &&
                          g_taps.size(2) == 4 && g_taps.scalar_type() == g.scalar_type()),
              "g_taps must be (2F, C, 4) like g");
  // a 3x3 kernel's (kh, kw) are read as one index k = 3 * kh + kw: they must be laid out as one dimension
  TORCH_CHECK(g.stride(2) == 3 * g.stride(3), "g's kernel positions must be dense");
  const int64_t gs[3] = {g.stride(0), g.stride(1), g.stride(3)};
  const int64_t ts[3] = {stacked ? 0 : g_taps.stride(0), stacked ? 0 : g_taps.stride(1),
                         stacked ? 0 : g_taps.stride(2)};
  auto opts = wx.options();
  auto gw = torch::empty({F, C, 3, 3}, opts.memory_format(channels_last ? at::MemoryFormat::ChannelsLast
                                                                         : at::MemoryFormat::Contiguous));
  auto gwx = torch::empty_like(wx), gwy = torch::empty_like(wy);
  auto gcx = torch::empty({F}, opts), gcy = torch::empty({F}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "twist_prepare_backward", [&] {
    const scalar_t* gp = g.data_ptr<scalar_t>();
    prepare_backward_kernel<scalar_t>(
        gp, gs, stacked ? nullptr : g_taps.data_ptr<scalar_t>(), ts, stacked ? gp + F * C * 9 : nullptr,
        stacked ? gp + 2 * F * C * 9 : nullptr, wx.data_ptr<float>(), wy.data_ptr<float>(), cx.data_ptr<float>(),
        cy.data_ptr<float>(), gw.data_ptr<float>(), channels_last ? 1 : 9, channels_last ? C : 1,
        gwx.data_ptr<float>(), gwy.data_ptr<float>(), gcx.data_ptr<float>(), gcy.data_ptr<float>(), F, C);
  });
  return {gw, gwx, gwy, gcx, gcy};
}

// Registered as torch operators (torch.ops.convtwist_zoo.*), not as a Python module, so that torch.compile can
// trace them (their shape functions are in fused_kernels.py).
TORCH_LIBRARY(convtwist_zoo, m) {
  m.def("twist_diffs(Tensor x, int stride) -> Tensor");                    // tap differences (NHWC)
  m.def("twist_scatter_add_(Tensor(a!) grad_x, Tensor g, int stride) -> ()");  // transpose of twist_diffs, added
  m.def("twist_combine_(Tensor(a!) out, Tensor tw) -> ()");               // out += gx*Tx + gy*Ty
  m.def("twist_grid_grad(Tensor grad) -> Tensor");                       // [gx*grad, gy*grad]
  m.def("twist_combine3(Tensor y) -> Tensor");                           // y_main + gx*y_x + gy*y_y
  m.def("twist_grid_grad3(Tensor grad) -> Tensor");                      // [grad, gx*grad, gy*grad]
  m.def("twist_prepare_taps(Tensor w, Tensor wx, Tensor wy, Tensor cx, Tensor cy, ScalarType dtype) -> "
        "(Tensor, Tensor)");                                               // main kernel, [Wx; Wy]
  m.def("twist_prepare_stacked(Tensor w, Tensor wx, Tensor wy, Tensor cx, Tensor cy, ScalarType dtype) -> Tensor");
  m.def("twist_prepare_backward(Tensor g, Tensor g_taps, Tensor wx, Tensor wy, Tensor cx, Tensor cy, "
        "bool channels_last) -> "
        "(Tensor, Tensor, Tensor, Tensor, Tensor)");                      // parameter gradients
}

TORCH_LIBRARY_IMPL(convtwist_zoo, CPU, m) {
  m.impl("twist_diffs", &twist_diffs);
  m.impl("twist_scatter_add_", &twist_scatter_add_);
  m.impl("twist_combine_", &twist_combine_);
  m.impl("twist_grid_grad", &twist_grid_grad);
  m.impl("twist_combine3", &twist_combine3);
  m.impl("twist_grid_grad3", &twist_grid_grad3);
  m.impl("twist_prepare_taps", &twist_prepare_taps);
  m.impl("twist_prepare_stacked", &twist_prepare_stacked);
  m.impl("twist_prepare_backward", &twist_prepare_backward);
}
