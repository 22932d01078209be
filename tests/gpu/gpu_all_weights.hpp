// All seven weights of every layer of a test model (support/sparse_adapter.hpp's
// AllWeights) copied to the device, for the adapter suites that compare a CUDA
// model's weights with the CPU's byte for byte.
#pragma once

#include <array>
#include <vector>

#include "gpu/gpu_support.hpp"
#include "support/sparse_adapter.hpp"

namespace s2ft_gpu {

// Device copies of all seven weights of every layer, rows padded by `pad`.
struct DevAll {
  std::vector<std::array<DeviceMatrix, 7>> w;
  std::vector<s2ft_layer_weights> layers;
  DevAll(const s2ft_test::AllWeights &h, int64_t pad) {
    w.resize(h.w.size());
    layers.assign(h.w.size(), s2ft_layer_weights{});
    for (size_t l = 0; l < h.w.size(); ++l)
      for (int32_t id : s2ft_test::kWeights) {
        const s2ft_test::HostMatrix &m = h.w[l][static_cast<size_t>(id)];
        w[l][static_cast<size_t>(id)] = DeviceMatrix(m, m.cols + pad);
        s2ft_test::field(layers[l], id) = &w[l][static_cast<size_t>(id)].t;
      }
  }
  // True when every weight holds the bytes of `h`.
  bool equals(const s2ft_test::AllWeights &h) const {
    settle();
    for (size_t l = 0; l < w.size(); ++l)
      for (int32_t id : s2ft_test::kWeights)
        if (!bit_equal(w[l][static_cast<size_t>(id)].download(), h.w[l][static_cast<size_t>(id)])) {
          ADD_FAILURE() << "layer " << l << " weight " << id << " differs";
          return false;
        }
    return true;
  }
};

}  // namespace s2ft_gpu
