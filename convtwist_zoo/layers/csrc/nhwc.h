// Shared by the fused CPU kernels (twist_cpu.cpp, maxblur_cpu.cpp): the accumulation type and the layout check.
#pragma once

#include <torch/extension.h>
#include <ATen/OpMathType.h>

namespace convtwist_zoo {

// float for float/bfloat16/half, double for double
template <typename T>
using acc_t = at::opmath_type<T>;

// The kernels index NHWC memory directly: any other layout would be read with the wrong strides.
inline void check_nhwc(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast), name,
              " must be a channels_last 4-D tensor");
}

}  // namespace convtwist_zoo
