// libFuzzer target: the adapter reader must accept or refuse any bytes,
// refusing with S2FT_ERR_FORMAT (no crash, no out-of-bounds read, no other
// exception), and an adapter it accepts must be consistent through the
// public accessors: ascending lines in range, deltas of the declared shape
// that are finite, and the target mask of the stored entries; sparse
// entries (format version 3) ascending and in range of their weight, finite,
// off the lines of the same weight, and the weight mask and count of
// s2ft_adapter_sparse_info.
//
// The bytes go through s2ft::adapter_from_image, which is s2ft_adapter_load
// after the file is read. Writing each input to a file first, as this
// target once did, cost 2.3 ms per input on ext4 (replacing a file's
// contents forces its blocks out on close) and held it at ~400 runs/s.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "adapter/adapter.hpp"
#include "common/error.hpp"
#include "s2ft/s2ft.h"

namespace {

[[noreturn]] void finding(const char *what) {
  std::fprintf(stderr, "fuzz_adapter_load: %s (last error: %s)\n", what, s2ft_last_error());
  std::abort();
}

void require_ok(s2ft_status status, const char *what) {
  if (status != S2FT_OK) finding(what);
}

// Lines a target's weight has and the length of each (columns of O and
// DOWN, rows of V and UP).
void target_geometry(const s2ft_model_shape &s, int32_t target, int64_t *lines, int64_t *length) {
  const int64_t q = int64_t{s.n_heads} * s.head_dim, kv = int64_t{s.n_kv_heads} * s.head_dim;
  switch (target) {
    case S2FT_TARGET_O: *lines = q, *length = s.d_model; break;
    case S2FT_TARGET_V: *lines = kv, *length = s.d_model; break;
    case S2FT_TARGET_DOWN: *lines = s.d_ff, *length = s.d_model; break;
    default: *lines = s.d_ff, *length = s.d_model; break;
  }
}

void check_entry(const s2ft_adapter *a, const s2ft_model_shape &shape, int32_t layer, int32_t target, uint32_t *mask) {
  int64_t n = 0;
  require_ok(s2ft_adapter_lines(a, layer, target, nullptr, nullptr, 0, &n), "s2ft_adapter_lines (count) failed");
  if (n == 0) return;
  *mask |= S2FT_TARGET_BIT(target);
  std::vector<int64_t> lines(static_cast<size_t>(n));
  std::vector<uint64_t> fps(static_cast<size_t>(n));
  require_ok(s2ft_adapter_lines(a, layer, target, lines.data(), fps.data(), n, &n), "s2ft_adapter_lines failed");
  int64_t available = 0, length = 0;
  target_geometry(shape, target, &available, &length);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i] < 0 || lines[i] >= available) finding("an accepted adapter has a line out of range");
    if (i > 0 && lines[i] <= lines[i - 1]) finding("an accepted adapter has lines that are not strictly ascending");
  }
  // The delta in the layout the header documents: [out, k] for column
  // targets, [k, in] for row targets.
  const bool columns = target == S2FT_TARGET_O || target == S2FT_TARGET_DOWN;
  const int64_t dims[2] = {columns ? length : n, columns ? n : length};
  std::vector<float> delta(static_cast<size_t>(n * length));
  s2ft_tensor t;
  require_ok(s2ft_tensor_init(&t, delta.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 2, dims), "s2ft_tensor_init failed");
  require_ok(s2ft_adapter_delta(a, layer, target, &t), "s2ft_adapter_delta failed");
  for (float v : delta)
    if (!std::isfinite(v)) finding("an accepted adapter has a non-finite delta");
}

// rows * cols of any of the seven weights, saturating at INT64_MAX.
int64_t weight_size(const s2ft_model_shape &s, int32_t w) {
  const int64_t q = int64_t{s.n_heads} * s.head_dim, kv = int64_t{s.n_kv_heads} * s.head_dim;
  int64_t r = 0, c = 0;
  switch (w) {
    case S2FT_WEIGHT_O: r = s.d_model, c = q; break;
    case S2FT_WEIGHT_V: r = kv, c = s.d_model; break;
    case S2FT_WEIGHT_DOWN: r = s.d_model, c = s.d_ff; break;
    case S2FT_WEIGHT_UP: r = s.d_ff, c = s.d_model; break;
    case S2FT_WEIGHT_Q: r = q, c = s.d_model; break;
    case S2FT_WEIGHT_K: r = kv, c = s.d_model; break;
    default: r = s.d_ff, c = s.d_model; break;
  }
  return r > INT64_MAX / c ? INT64_MAX : r * c;
}

void check_sparse(const s2ft_adapter *a, const s2ft_model_shape &shape, int32_t layer, int32_t weight, uint32_t *mask,
                  int64_t *total) {
  int64_t n = 0;
  uint64_t fp = 0;
  require_ok(s2ft_adapter_sparse(a, layer, weight, nullptr, nullptr, 0, &n, &fp), "s2ft_adapter_sparse (count) failed");
  if (n == 0) return;
  *mask |= S2FT_WEIGHT_BIT(weight);
  *total += n;
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::vector<float> val(static_cast<size_t>(n));
  require_ok(s2ft_adapter_sparse(a, layer, weight, idx.data(), val.data(), n, &n, nullptr), "s2ft_adapter_sparse failed");
  const int64_t size = weight_size(shape, weight);
  for (size_t i = 0; i < idx.size(); ++i) {
    if (idx[i] < 0 || idx[i] >= size) finding("an accepted adapter has a sparse index out of range");
    if (i > 0 && idx[i] <= idx[i - 1]) finding("an accepted adapter has sparse indices that are not strictly ascending");
    if (!std::isfinite(val[i])) finding("an accepted adapter has a non-finite sparse delta");
  }
  if (weight >= S2FT_NUM_TARGETS) return;
  int64_t k = 0;
  require_ok(s2ft_adapter_lines(a, layer, weight, nullptr, nullptr, 0, &k), "s2ft_adapter_lines (count) failed");
  if (k == 0) return;
  std::vector<int64_t> lines(static_cast<size_t>(k));
  require_ok(s2ft_adapter_lines(a, layer, weight, lines.data(), nullptr, k, &k), "s2ft_adapter_lines failed");
  int64_t available = 0, length = 0;
  target_geometry(shape, weight, &available, &length);
  const bool columns = weight == S2FT_TARGET_O || weight == S2FT_TARGET_DOWN;
  const int64_t cols = columns ? available : length;
  for (int64_t x : idx) {
    const int64_t line = columns ? x % cols : x / cols;
    for (int64_t l : lines)
      if (l == line) finding("an accepted adapter has a sparse entry on one of its lines");
  }
}

struct AdapterFree {
  void operator()(s2ft_adapter *a) const { s2ft_adapter_destroy(a); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::unique_ptr<s2ft_adapter, AdapterFree> owned;
  try {
    owned.reset(s2ft::adapter_from_image(std::vector<uint8_t>(data, data + size), "fuzz.safetensors").release());
  } catch (const s2ft::Error &e) {
    // Anything else (another status, another exception type) is a finding:
    // the C API would report it as an internal error, not a bad file.
    if (e.status() != S2FT_ERR_FORMAT) finding(e.what());
    return 0;
  }
  const s2ft_adapter *a = owned.get();
  s2ft_model_shape shape;
  double scale = 0;
  uint32_t targets = 0;
  require_ok(s2ft_adapter_info(a, &shape, &scale, &targets), "s2ft_adapter_info failed");
  if (!std::isfinite(scale)) finding("an accepted adapter has a non-finite default scale");
  // Every stored entry goes through the accessors. An adapter may declare
  // up to 65536 layers and store few of them, so the empty ones are found
  // in the adapter's table, and only the first layers' are asked for.
  uint32_t mask = 0;
  for (int32_t l = 0; l < shape.n_layers; ++l)
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t)
      if (l < 4 || !a->layers[static_cast<size_t>(l)][static_cast<size_t>(t)].empty()) check_entry(a, shape, l, t, &mask);
  if (mask != targets) finding("s2ft_adapter_info's targets differ from the stored entries");
  uint32_t sparse_mask = 0, info_mask = 0;
  int64_t sparse_total = 0, info_total = 0;
  for (int32_t l = 0; l < shape.n_layers; ++l)
    for (int32_t w = 0; w < S2FT_NUM_WEIGHTS; ++w)
      if (l < 4 || !a->sparse[static_cast<size_t>(l)][static_cast<size_t>(w)].empty())
        check_sparse(a, shape, l, w, &sparse_mask, &sparse_total);
  require_ok(s2ft_adapter_sparse_info(a, &info_mask, &info_total), "s2ft_adapter_sparse_info failed");
  if (info_mask != sparse_mask || info_total != sparse_total)
    finding("s2ft_adapter_sparse_info differs from the stored sparse entries");
  // Fused with itself at weights 1 and -1: the sum of an adapter and its
  // negation is all zeros with the same lines. Fuse sizes its work by the
  // lines the adapters hold, never by the shape the metadata claims (an
  // adapter claiming d_ff = 2^31 - 1 once made it ask for 16 GiB).
  const s2ft_adapter *pair[2] = {a, a};
  const double weights[2] = {1.0, -1.0};
  s2ft_adapter *fused = nullptr;
  require_ok(s2ft_adapter_fuse(pair, weights, 2, &fused), "s2ft_adapter_fuse of an accepted adapter with itself failed");
  std::unique_ptr<s2ft_adapter, AdapterFree> owned_fused(fused);
  uint32_t fused_targets = 0;
  require_ok(s2ft_adapter_info(fused, nullptr, nullptr, &fused_targets), "s2ft_adapter_info of a fused adapter failed");
  if (fused_targets != targets) finding("fusing an adapter with itself changed its targets");
  uint32_t fused_sparse = 0;
  require_ok(s2ft_adapter_sparse_info(fused, &fused_sparse, nullptr), "s2ft_adapter_sparse_info of a fused adapter failed");
  if (fused_sparse != sparse_mask) finding("fusing an adapter with itself changed its sparse weights");
  return 0;
}
