// Shared helpers for the GoogleTest suites: deterministic random data,
// poisoning, float64 references, typed host buffers, error assertions.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "s2ft/s2ft.h"

namespace s2ft_test {

// SplitMix64: the tests' own generator, so data is the same everywhere.
class Random {
 public:
  explicit Random(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform(double lo = -1.0, double hi = 1.0) {
    return lo + (hi - lo) * static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
  }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t s_;
};

// Round-to-nearest-even f32 -> bf16/f16 and back, written independently of the library.
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float from_bf16(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// f16 through the value: normal numbers only (test data stays in [-4, 4]).
inline uint16_t to_f16(float f) {
  if (f == 0.0f) return std::signbit(f) ? 0x8000 : 0;
  if (std::isnan(f)) return 0x7e00;  // poison(): a quiet NaN
  if (std::isinf(f)) return f < 0 ? 0xfc00 : 0x7c00;
  const uint16_t sign = f < 0 ? 0x8000 : 0;
  double a = std::fabs(static_cast<double>(f));
  int e = 0;
  double m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  // f16 normal: 1.f * 2^(E-15), 10 fraction bits.
  double scaled = std::ldexp(m, 11);  // 11 significant bits
  double r = std::nearbyint(scaled);  // ties to even under the default rounding mode
  if (r == 2048.0) {
    r = 1024.0;
    ++e;
  }
  int E = e - 1 + 15;
  if (E <= 0) return sign;  // not used by the tests' data
  return static_cast<uint16_t>(sign | (E << 10) | (static_cast<int>(r) - 1024));
}
inline float from_f16(uint16_t h) {
  int E = (h >> 10) & 31, F = h & 1023;
  if (E == 31) return F ? std::numeric_limits<float>::quiet_NaN() : ((h & 0x8000) ? -INFINITY : INFINITY);
  double v = E == 0 ? std::ldexp(F, -24) : std::ldexp(1024 + F, E - 25);
  return static_cast<float>((h & 0x8000) ? -v : v);
}

// The correctly rounded dtype value of d, found independently of the
// library: the nearest of the three patterns around the double-rounded
// guess, ties to an even pattern.
inline float round_once(double d, int32_t dtype) {
  if (dtype == S2FT_F32) return static_cast<float>(d);
  const bool bf = dtype == S2FT_BF16;
  const uint16_t guess = bf ? to_bf16(static_cast<float>(d)) : to_f16(static_cast<float>(d));
  float best = NAN;
  double best_err = INFINITY;
  uint16_t best_bits = 0;
  for (int delta = -1; delta <= 1; ++delta) {
    const uint16_t bits = static_cast<uint16_t>(guess + delta);
    const float v = bf ? from_bf16(bits) : from_f16(bits);
    if (!std::isfinite(v)) continue;
    const double err = std::fabs(static_cast<double>(v) - d);
    if (err < best_err || (err == best_err && (bits & 1u) == 0 && (best_bits & 1u) == 1)) {
      best = v, best_err = err, best_bits = bits;
    }
  }
  return best;
}

// A host buffer of one dtype holding a [rows, cols] matrix, with its tensor descriptor.
struct HostMatrix {
  int32_t dtype = S2FT_F32;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> bytes;
  s2ft_tensor t{};

  HostMatrix() = default;
  HostMatrix(int32_t dt, int64_t r, int64_t c) : dtype(dt), rows(r), cols(c) {
    bytes.assign(static_cast<size_t>(r * c) * elem() + 8, 0);
    const int64_t shape[2] = {r, c};
    EXPECT_EQ(s2ft_tensor_init(&t, bytes.data(), dt, S2FT_DEVICE_CPU, 0, 2, shape), S2FT_OK);
  }
  HostMatrix(const HostMatrix &o) : dtype(o.dtype), rows(o.rows), cols(o.cols), bytes(o.bytes), t(o.t) {
    t.data = bytes.data();
  }
  HostMatrix &operator=(const HostMatrix &o) {
    dtype = o.dtype;
    rows = o.rows;
    cols = o.cols;
    bytes = o.bytes;
    t = o.t;
    t.data = bytes.data();
    return *this;
  }
  size_t elem() const { return dtype == S2FT_F32 ? 4 : 2; }
  float get(int64_t i, int64_t j) const {
    const uint8_t *p = bytes.data() + static_cast<size_t>(i * cols + j) * elem();
    if (dtype == S2FT_F32) {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    uint16_t h;
    std::memcpy(&h, p, 2);
    return dtype == S2FT_BF16 ? from_bf16(h) : from_f16(h);
  }
  void set(int64_t i, int64_t j, float v) {
    uint8_t *p = bytes.data() + static_cast<size_t>(i * cols + j) * elem();
    if (dtype == S2FT_F32) {
      std::memcpy(p, &v, 4);
      return;
    }
    uint16_t h = dtype == S2FT_BF16 ? to_bf16(v) : to_f16(v);
    std::memcpy(p, &h, 2);
  }
  void fill_random(Random &rng, double scale = 1.0) {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) set(i, j, static_cast<float>(rng.uniform() * scale));
  }
  void poison() {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) set(i, j, std::numeric_limits<float>::quiet_NaN());
  }
  std::vector<double> to_double() const {
    std::vector<double> out(static_cast<size_t>(rows * cols));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) out[static_cast<size_t>(i * cols + j)] = get(i, j);
    return out;
  }
};

// k distinct lines out of n, in random (shuffled) order.
inline std::vector<int64_t> shuffled_lines(Random &rng, int64_t n, int64_t k) {
  std::vector<int64_t> all(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(rng.below(i + 1))]);
  all.resize(static_cast<size_t>(k));
  return all;
}

// The [cols, rows] transpose of h, bit for bit.
inline HostMatrix transpose(const HostMatrix &h) {
  HostMatrix t(h.dtype, h.cols, h.rows);
  const size_t e = h.elem();
  for (int64_t i = 0; i < h.rows; ++i)
    for (int64_t j = 0; j < h.cols; ++j)
      std::memcpy(&t.bytes[static_cast<size_t>(j * h.rows + i) * e], &h.bytes[static_cast<size_t>(i * h.cols + j) * e], e);
  return t;
}

// C[m,n] = op(A) op(B) in double; A is [ar, ac] row-major.
inline std::vector<double> ref_matmul(const std::vector<double> &a, int64_t ar, int64_t ac, bool ta,
                                      const std::vector<double> &b, int64_t br, int64_t bc, bool tb) {
  const int64_t m = ta ? ac : ar, k = ta ? ar : ac, n = tb ? br : bc;
  std::vector<double> c(static_cast<size_t>(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p) {
      const double av = ta ? a[static_cast<size_t>(p * ac + i)] : a[static_cast<size_t>(i * ac + p)];
      for (int64_t j = 0; j < n; ++j)
        c[static_cast<size_t>(i * n + j)] += av * (tb ? b[static_cast<size_t>(j * bc + p)] : b[static_cast<size_t>(p * bc + j)]);
    }
  (void)br;
  return c;
}

// ||got - want|| / max(||want||, tiny), over all elements.
inline double rel_error(const std::vector<double> &got, const std::vector<double> &want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  if (std::isnan(num)) return std::numeric_limits<double>::infinity();
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}

inline double tolerance(int32_t dtype) { return dtype == S2FT_F32 ? 1e-5 : (dtype == S2FT_F16 ? 2e-3 : 1e-2); }

inline const char *dtype_label(int32_t dtype) {
  return dtype == S2FT_F32 ? "f32" : dtype == S2FT_F16 ? "f16" : "bf16";
}

// Random-strategy options that train count[t] units of every target with
// count[t] > 0 (and no ratio budgets).
inline s2ft_select_options count_options(const int64_t count[S2FT_NUM_TARGETS], int32_t head_granularity) {
  s2ft_select_options opts;
  EXPECT_EQ(s2ft_select_options_init(&opts, S2FT_SELECT_OPTIONS_VERSION), S2FT_OK);
  opts.targets = 0;
  for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
    opts.ratio[t] = 0.0;
    opts.count[t] = count[t];
    if (count[t] > 0) opts.targets |= S2FT_TARGET_BIT(t);
  }
  opts.head_granularity = head_granularity;
  return opts;
}

// Owners of library handles, so a failing assertion never leaks one.
struct Context {
  s2ft_context *ctx = nullptr;
  Context() { EXPECT_EQ(s2ft_context_create(nullptr, &ctx), S2FT_OK) << s2ft_last_error(); }
  Context(const Context &) = delete;
  Context &operator=(const Context &) = delete;
  ~Context() { s2ft_context_destroy(ctx); }
};

struct Selection {
  s2ft_selection *sel = nullptr;
  Selection() = default;
  Selection(const Selection &) = delete;
  Selection &operator=(const Selection &) = delete;
  ~Selection() { s2ft_selection_destroy(sel); }
};

struct AdapterOwner {
  s2ft_adapter *a = nullptr;
  AdapterOwner() = default;
  AdapterOwner(const AdapterOwner &) = delete;
  AdapterOwner &operator=(const AdapterOwner &) = delete;
  ~AdapterOwner() { s2ft_adapter_destroy(a); }
};

struct ModelOwner {
  s2ft_model *m = nullptr;
  ModelOwner() = default;
  ModelOwner(const ModelOwner &) = delete;
  ModelOwner &operator=(const ModelOwner &) = delete;
  ~ModelOwner() { s2ft_model_destroy(m); }
};

}  // namespace s2ft_test

// Asserts that `call` fails with `status` and that the last error mentions `needle`.
#define EXPECT_S2FT_ERROR(call, status, needle)                                        \
  do {                                                                                 \
    s2ft_clear_error();                                                                \
    const s2ft_status s2ft_st_ = (call);                                               \
    EXPECT_EQ(s2ft_st_, (status)) << "message: " << s2ft_last_error();                 \
    EXPECT_NE(std::string(s2ft_last_error()).find(needle), std::string::npos)          \
        << "expected '" << (needle) << "' in: " << s2ft_last_error();                  \
  } while (0)

#define ASSERT_S2FT_OK(call)                                                  \
  do {                                                                        \
    const s2ft_status s2ft_st_ = (call);                                      \
    ASSERT_EQ(s2ft_st_, S2FT_OK) << s2ft_status_string(s2ft_st_) << ": " << s2ft_last_error(); \
  } while (0)
