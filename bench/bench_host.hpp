// What the CPU benchmark programs share: exiting on a failed libs2ft call,
// seeded host tensors, wall-clock time and medians.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "s2ft/s2ft.h"

namespace bench {

inline void check(s2ft_status st, const char *what) {
  if (st != S2FT_OK) {
    std::fprintf(stderr, "%s failed: %s: %s\n", what, s2ft_status_string(st), s2ft_last_error());
    std::exit(1);
  }
}

// A rows x cols host tensor, f32 or bf16, uniform in [-1, 1) from `seed`
// (SplitMix64, the same on every platform).
struct Buffer {
  std::vector<uint16_t> h;
  std::vector<float> f;
  s2ft_tensor t{};
  Buffer(int32_t dtype, int64_t rows, int64_t cols, uint64_t seed) {
    const int64_t shape[2] = {rows, cols};
    const size_t n = static_cast<size_t>(rows * cols);
    uint64_t s = seed;
    auto next = [&] {
      uint64_t z = (s += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      return static_cast<float>(static_cast<double>((z ^ (z >> 31)) >> 11) / 4503599627370496.0 - 1.0);
    };
    if (dtype == S2FT_F32) {
      f.resize(n);
      for (auto &v : f) v = next();
      check(s2ft_tensor_init(&t, f.data(), dtype, S2FT_DEVICE_CPU, 0, 2, shape), "tensor");
    } else {
      h.resize(n);
      for (auto &v : h) {
        const float x = next();
        uint32_t u;
        std::memcpy(&u, &x, 4);
        v = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  // round to nearest even
      }
      check(s2ft_tensor_init(&t, h.data(), dtype, S2FT_DEVICE_CPU, 0, 2, shape), "tensor");
    }
  }
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

}  // namespace bench
