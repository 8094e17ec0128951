// Fused CPU kernels for ConvTwist's 4-tap twist (see convtwist_zoo/layers.py, `_TwistConv`) and for its stacked
// variant (`_StackedTwistConv`: one convolution with main, x and y kernels, then the grid combine).
// Tensors are NHWC (channels_last); the tap differences are a matrix with one row per output pixel and columns
// (tap, input channel). Each kernel is one pass over memory where plain PyTorch ops need several.
#include <algorithm>

#include <torch/extension.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

namespace {

// Free taps of an antisymmetric 3x3 kernel, (row, col); the mirror (2-r, 2-c) holds the negative.
constexpr int kTapR[4] = {0, 0, 0, 1};
constexpr int kTapC[4] = {0, 1, 2, 0};

// float for float/bfloat16/half, double for double
template <typename T>
using acc_t = at::opmath_type<T>;

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

void check_nhwc(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast), name,
              " must be a channels_last 4-D tensor");
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

// Registered as torch operators (torch.ops.convtwist_zoo.*), not as a Python module, so that torch.compile can
// trace them (their shape functions are in fused_kernels.py).
TORCH_LIBRARY(convtwist_zoo, m) {
  m.def("twist_diffs(Tensor x, int stride) -> Tensor");                    // tap differences (NHWC)
  m.def("twist_scatter_add_(Tensor(a!) grad_x, Tensor g, int stride) -> ()");  // transpose of twist_diffs, added
  m.def("twist_combine_(Tensor(a!) out, Tensor tw) -> ()");               // out += gx*Tx + gy*Ty
  m.def("twist_grid_grad(Tensor grad) -> Tensor");                       // [gx*grad, gy*grad]
  m.def("twist_combine3(Tensor y) -> Tensor");                           // y_main + gx*y_x + gy*y_y
  m.def("twist_grid_grad3(Tensor grad) -> Tensor");                      // [grad, gx*grad, gy*grad]
}

TORCH_LIBRARY_IMPL(convtwist_zoo, CPU, m) {
  m.impl("twist_diffs", &twist_diffs);
  m.impl("twist_scatter_add_", &twist_scatter_add_);
  m.impl("twist_combine_", &twist_combine_);
  m.impl("twist_grid_grad", &twist_grid_grad);
  m.impl("twist_combine3", &twist_combine3);
  m.impl("twist_grid_grad3", &twist_grid_grad3);
}
