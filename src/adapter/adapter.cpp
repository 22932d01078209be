// The adapter object: creating one, filling it entry by entry or from a
// training run, and reading it back. Invariants every function keeps (and
// s2ft_adapter_load() checks for files): per (layer, target) the lines are
// distinct, ascending, in base order and in range; there is one fingerprint
// per line; the delta is finite f32 of shape [out, k] (O, DOWN) or [k, in]
// (V, UP); the name is valid UTF-8 of at most 255 bytes. Per (layer,
// weight) the sparse entries' indices are strictly ascending and in range,
// with one finite f32 delta each, and none lies on a line of the structured
// entry of the same (layer, weight).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "adapter/adapter.hpp"
#include "common/error.hpp"
#include "context.hpp"
#include "model_shape.hpp"
#include "select/selection.hpp"

namespace s2ft {

bool valid_utf8(const std::string &s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0, min = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

namespace {

constexpr size_t kMaxNameBytes = 255;
const s2ft_device kCpu{S2FT_DEVICE_CPU, 0};

std::string checked_name(const char *name, const char *what) {
  require_not_null(name, what);
  const size_t len = strnlen(name, kMaxNameBytes + 1);
  if (len > kMaxNameBytes)
    fail_arg(std::string(what) + " is longer than " + std::to_string(kMaxNameBytes) + " bytes");
  std::string s(name, len);
  if (!valid_utf8(s)) fail_arg(std::string(what) + " is not valid UTF-8");
  return s;
}

std::unique_ptr<s2ft_adapter> new_adapter(const s2ft_model_shape &shape, std::string name, double default_scale) {
  auto a = std::make_unique<s2ft_adapter>();
  a->shape = shape;
  a->name = std::move(name);
  a->default_scale = default_scale;
  a->layers.resize(static_cast<size_t>(shape.n_layers));
  a->sparse.resize(static_cast<size_t>(shape.n_layers));
  a->low_rank.resize(static_cast<size_t>(shape.n_layers));
  return a;
}

const s2ft_adapter &require_adapter(const s2ft_adapter *a, const char *name = "adapter") {
  require_live(a, name);
  return *a;
}

// "[layer L target T]" for messages.
std::string where(int32_t layer, int32_t target) {
  return "layer " + std::to_string(layer) + " target " + target_name(target);
}

// A delta entry's expected [rows, cols] for k lines.
void delta_shape(const s2ft_model_shape &s, int32_t target, int64_t k, int64_t *rows, int64_t *cols) {
  const int64_t len = target_line_length(s, target);
  if (target_axis(target) == S2FT_AXIS_COLUMNS) *rows = len, *cols = k;
  else *rows = k, *cols = len;
}

// Element j (0..line length) of line i (0..k) in a row-major delta buffer.
inline size_t delta_at(int32_t axis, int64_t k, int64_t len, int64_t i, int64_t j) {
  return static_cast<size_t>(axis == S2FT_AXIS_COLUMNS ? j * k + i : i * len + j);
}

// Rounds a double delta to f32 and refuses values that do not stay finite,
// so an adapter never carries NaN or Inf into a model.
float finite_f32(double v, const std::string &what) {
  const float f = static_cast<float>(v);
  if (!std::isfinite(f)) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    fail_arg(what + " is not finite in f32 (" + buf + ")");
  }
  return f;
}

// The base-order lines the selection trains for (layer, target), ascending:
// head h covers lines [h*head_dim, (h+1)*head_dim) of O (query heads) and V
// (KV heads); a channel is one line of DOWN and UP.
std::vector<int64_t> trained_lines(const s2ft_selection &sel, int32_t layer, int32_t target) {
  const LayerUnits &u = sel.layers[static_cast<size_t>(layer)];
  std::vector<int64_t> units = target == S2FT_TARGET_O ? o_query_heads(sel.shape, sel.head_granularity, u)
                                                       : u.units[static_cast<size_t>(target)];
  std::sort(units.begin(), units.end());
  const int64_t width = target_unit_width(sel.shape, target);
  std::vector<int64_t> lines;
  lines.reserve(units.size() * static_cast<size_t>(width));
  for (int64_t v : units)
    for (int64_t j = 0; j < width; ++j) lines.push_back(v * width + j);
  return lines;
}

// Checks a weight the caller passes as "<array>[layer].<field>": set, on
// the CPU, a supported dtype, the full [out, in] shape of the target.
Matrix check_weight(const s2ft_tensor *t, const std::string &name, const s2ft_model_shape &s, int32_t target) {
  if (t != nullptr && t->device.type != S2FT_DEVICE_CPU)
    fail(S2FT_ERR_DEVICE, name + " is on " + device_name(t->device) + "; adapters are built from CPU tensors");
  const Matrix m = check_matrix(t, name.c_str(), kCpu);
  int64_t rows, cols;
  target_weight_shape(s, target, &rows, &cols);
  require_shape(m, name.c_str(), rows, cols);
  return m;
}

const char *const kWeightField[S2FT_NUM_TARGETS] = {"o", "v", "down", "up"};

// "(row r, column c)" of flat index n in a weight of `cols` columns.
std::string element_text(int64_t n, int64_t cols) {
  return "(row " + std::to_string(n / cols) + ", column " + std::to_string(n % cols) + ")";
}

// Refuses a structured entry of (layer, target) with `sorted_lines` (ascending)
// when a sparse entry of the same (layer, weight) lies on one of them.
void check_lines_free(const s2ft_adapter &a, int32_t layer, int32_t target, const std::vector<int64_t> &sorted_lines) {
  const SparseEntry &sp = a.sparse[static_cast<size_t>(layer)][static_cast<size_t>(target)];
  if (sp.empty()) return;
  int64_t rows, cols;
  weight_shape(a.shape, target, &rows, &cols);
  for (int64_t n : sp.indices) {
    const int64_t line = element_line(target, cols, n);
    if (std::binary_search(sorted_lines.begin(), sorted_lines.end(), line))
      fail_arg("line " + std::to_string(line) + " of " + where(layer, target) + " holds the adapter's sparse entry " +
               std::to_string(n) + " " + element_text(n, cols) +
               " (a line and a sparse entry may not overlap: remove the sparse entries first, or fuse)");
  }
}

// Refuses a structured or sparse entry on a (layer, weight) that holds a
// low-rank entry (which changes the whole weight).
void check_no_low_rank(const s2ft_adapter &a, int32_t layer, int32_t weight) {
  if (!a.low_rank[static_cast<size_t>(layer)][static_cast<size_t>(weight)].empty())
    fail_arg("the adapter has a low-rank entry for layer " + std::to_string(layer) + " weight " + weight_name(weight) +
             " (it changes the whole weight: remove it first with s2ft_adapter_set_low_rank(..., NULL, NULL, NULL))");
}

}  // namespace
}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_adapter_create(const s2ft_model_shape *shape, const char *name, double default_scale,
                                         s2ft_adapter **out) {
  return s2ft::guard("s2ft_adapter_create", [&] {
    s2ft::require_not_null(out, "out");
    *out = nullptr;
    s2ft::check_model_shape(shape, "shape");
    std::string n = s2ft::checked_name(name, "name");
    if (!std::isfinite(default_scale)) s2ft::fail_arg("default_scale " + std::to_string(default_scale) + " is not finite");
    *out = s2ft::new_adapter(*shape, std::move(n), default_scale).release();
  });
}

S2FT_API void s2ft_adapter_destroy(s2ft_adapter *adapter) {
  if (s2ft::destroyable(adapter)) delete adapter;
}

S2FT_API s2ft_status s2ft_adapter_set(s2ft_adapter *adapter, int32_t layer, int32_t target, const int64_t *lines,
                                      int64_t n_lines, const s2ft_tensor *delta, const s2ft_tensor *base) {
  return s2ft::guard("s2ft_adapter_set", [&] {
    s2ft::require_live(adapter, "adapter");
    const s2ft_model_shape &s = adapter->shape;
    s2ft::check_layer(s, layer);
    s2ft::check_target(target);
    s2ft::AdapterEntry &slot = adapter->layers[static_cast<size_t>(layer)][static_cast<size_t>(target)];
    const int64_t n_avail = s2ft::target_line_count(s, target);
    if (n_lines < 0 || n_lines > n_avail)
      s2ft::fail_arg("n_lines " + std::to_string(n_lines) + " is out of range [0, " + std::to_string(n_avail) + "] for " +
                     s2ft::where(layer, target));
    if (n_lines == 0) {
      slot = s2ft::AdapterEntry{};
      adapter->entries_changed();
      return;
    }
    s2ft::require_not_null(lines, "lines");
    s2ft::check_no_low_rank(*adapter, layer, target);
    for (int64_t i = 0; i < n_lines; ++i)
      if (lines[i] < 0 || lines[i] >= n_avail)
        s2ft::fail_arg("lines[" + std::to_string(i) + "] = " + std::to_string(lines[i]) + " is out of range [0, " +
                       std::to_string(n_avail) + ")");
    const s2ft::Matrix d = s2ft::check_matrix(delta, "delta", s2ft::kCpu);
    int64_t drows, dcols;
    s2ft::delta_shape(s, target, n_lines, &drows, &dcols);
    s2ft::require_shape(d, "delta", drows, dcols);
    s2ft::Matrix b;
    if (base != nullptr) {
      b = s2ft::check_matrix(base, "base", s2ft::kCpu);
      int64_t rows, cols;
      s2ft::target_weight_shape(s, target, &rows, &cols);
      s2ft::require_shape(b, "base", rows, cols);
    }

    // Entries keep lines ascending: order[i] is the caller's position of
    // the i-th smallest line, and its delta line and fingerprint go with it.
    std::vector<int64_t> order(static_cast<size_t>(n_lines));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t c) { return lines[a] < lines[c]; });
    // Duplicates are neighbours once sorted (no table sized by the model shape,
    // which may be huge: the entry's memory follows its lines).
    for (size_t i = 1; i < order.size(); ++i)
      if (lines[order[i]] == lines[order[i - 1]])
        s2ft::fail_arg("lines[" + std::to_string(std::max(order[i], order[i - 1])) + "] = " +
                       std::to_string(lines[order[i]]) + " is duplicated");
    {
      std::vector<int64_t> sorted(static_cast<size_t>(n_lines));
      for (int64_t i = 0; i < n_lines; ++i) sorted[static_cast<size_t>(i)] = lines[order[static_cast<size_t>(i)]];
      s2ft::check_lines_free(*adapter, layer, target, sorted);
    }
    const int32_t axis = s2ft::target_axis(target);
    const int64_t len = s2ft::target_line_length(s, target);
    s2ft::AdapterEntry e;
    e.lines.resize(static_cast<size_t>(n_lines));
    e.fingerprints.assign(static_cast<size_t>(n_lines), 0);
    e.delta.resize(static_cast<size_t>(n_lines * len));
    for (int64_t i = 0; i < n_lines; ++i) {
      const int64_t src = order[static_cast<size_t>(i)];
      e.lines[static_cast<size_t>(i)] = lines[src];
      if (base != nullptr) e.fingerprints[static_cast<size_t>(i)] = s2ft::line_fingerprint(b, axis, lines[src]);
      for (int64_t j = 0; j < len; ++j) {
        const float v = axis == S2FT_AXIS_COLUMNS ? d.get(j, src) : d.get(src, j);
        if (!std::isfinite(v))
          s2ft::fail_arg("delta holds a non-finite value at line " + std::to_string(src) + " element " + std::to_string(j));
        e.delta[s2ft::delta_at(axis, n_lines, len, i, j)] = v;
      }
    }
    slot = std::move(e);
    adapter->entries_changed();
  });
}

S2FT_API s2ft_status s2ft_adapter_from_training(s2ft_context *ctx, const s2ft_selection *sel,
                                                const s2ft_layer_weights *base, const s2ft_layer_weights *trained,
                                                int32_t permuted, const char *name, s2ft_adapter **out) {
  return s2ft::guard("s2ft_adapter_from_training", [&] {
    s2ft::require_not_null(out, "out");
    *out = nullptr;
    s2ft::require_context(ctx);
    const s2ft_selection &s = s2ft::require_selection(sel);
    s2ft::require_not_null(base, "base");
    s2ft::require_not_null(trained, "trained");
    std::string n = s2ft::checked_name(name, "name");
    const s2ft_model_shape &shape = s.shape;

    // Every weight a trained target reads is checked before any work.
    struct Job {
      int32_t layer, target;
      std::vector<int64_t> lines;
      s2ft::Matrix base, trained;
      std::string trained_name;
    };
    std::vector<Job> jobs;
    for (int32_t l = 0; l < shape.n_layers; ++l)
      for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
        std::vector<int64_t> lines = s2ft::trained_lines(s, l, t);
        if (lines.empty()) continue;
        const std::string suffix = "[" + std::to_string(l) + "]." + s2ft::kWeightField[t];
        const std::string bn = "base" + suffix, tn = "trained" + suffix;
        const s2ft_tensor *bt = s2ft::target_weight(base[l], t), *tt = s2ft::target_weight(trained[l], t);
        const std::string why = std::string(" is NULL but the selection trains ") + s2ft::target_name(t) +
                                " in layer " + std::to_string(l);
        if (bt == nullptr) s2ft::fail_arg(bn + why);
        if (tt == nullptr) s2ft::fail_arg(tn + why);
        Job j{l, t, std::move(lines), s2ft::check_weight(bt, bn, shape, t), s2ft::check_weight(tt, tn, shape, t), tn};
        jobs.push_back(std::move(j));
      }

    // delta[line] = trained[pos] - base[pos] in double, rounded once to f32,
    // where pos is the line's position in the weights as given (its base
    // index, or where the permutation moved it). The base line at pos has
    // the bytes of the base-order line, so its fingerprint is the same.
    auto adapter = s2ft::new_adapter(shape, std::move(n), 1.0);
    for (const Job &j : jobs) {
      const int32_t axis = s2ft::target_axis(j.target);
      const int64_t len = s2ft::target_line_length(shape, j.target);
      const int64_t k = static_cast<int64_t>(j.lines.size());
      s2ft::AdapterEntry e;
      e.lines = j.lines;
      e.fingerprints.resize(j.lines.size());
      e.delta.resize(static_cast<size_t>(k * len));
      for (int64_t i = 0; i < k; ++i) {
        const int64_t line = j.lines[static_cast<size_t>(i)];
        const int64_t pos = permuted != 0 ? s2ft::permuted_line(s, j.layer, j.target, line) : line;
        e.fingerprints[static_cast<size_t>(i)] = s2ft::line_fingerprint(j.base, axis, pos);
        for (int64_t x = 0; x < len; ++x) {
          const int64_t r = axis == S2FT_AXIS_COLUMNS ? x : pos, c = axis == S2FT_AXIS_COLUMNS ? pos : x;
          const double d = static_cast<double>(j.trained.get(r, c)) - static_cast<double>(j.base.get(r, c));
          e.delta[s2ft::delta_at(axis, k, len, i, x)] =
              s2ft::finite_f32(d, "the delta of " + j.trained_name + " at (" + std::to_string(r) + ", " +
                                      std::to_string(c) + ")");
        }
      }
      adapter->layers[static_cast<size_t>(j.layer)][static_cast<size_t>(j.target)] = std::move(e);
    }
    *out = adapter.release();
  });
}

S2FT_API s2ft_status s2ft_adapter_set_info(s2ft_adapter *adapter, const char *name, double default_scale) {
  return s2ft::guard("s2ft_adapter_set_info", [&] {
    s2ft::require_live(adapter, "adapter");
    std::string n = s2ft::checked_name(name, "name");
    if (!std::isfinite(default_scale)) s2ft::fail_arg("default_scale " + std::to_string(default_scale) + " is not finite");
    adapter->name = std::move(n);
    adapter->default_scale = default_scale;
  });
}

S2FT_API const char *s2ft_adapter_name(const s2ft_adapter *adapter) {
  return adapter == nullptr ? "" : adapter->name.c_str();
}

S2FT_API s2ft_status s2ft_adapter_info(const s2ft_adapter *adapter, s2ft_model_shape *shape, double *default_scale,
                                       uint32_t *targets) {
  return s2ft::guard("s2ft_adapter_info", [&] {
    const s2ft_adapter &a = s2ft::require_adapter(adapter);
    if (shape != nullptr) *shape = a.shape;
    if (default_scale != nullptr) *default_scale = a.default_scale;
    if (targets != nullptr) {
      uint32_t mask = 0;
      for (const auto &layer : a.layers)
        for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t)
          if (!layer[static_cast<size_t>(t)].empty()) mask |= S2FT_TARGET_BIT(t);
      *targets = mask;
    }
  });
}

S2FT_API s2ft_status s2ft_adapter_lines(const s2ft_adapter *adapter, int32_t layer, int32_t target, int64_t *lines,
                                        uint64_t *fingerprints, int64_t capacity, int64_t *count) {
  return s2ft::guard("s2ft_adapter_lines", [&] {
    const s2ft_adapter &a = s2ft::require_adapter(adapter);
    s2ft::require_not_null(count, "count");
    s2ft::check_layer(a.shape, layer);
    s2ft::check_target(target);
    const s2ft::AdapterEntry &e = a.layers[static_cast<size_t>(layer)][static_cast<size_t>(target)];
    const int64_t n = static_cast<int64_t>(e.lines.size());
    if (lines != nullptr) {
      if (capacity < n)
        s2ft::fail_arg("capacity " + std::to_string(capacity) + " is below the " + std::to_string(n) + " lines of " +
                       s2ft::where(layer, target));
      std::copy(e.lines.begin(), e.lines.end(), lines);
      if (fingerprints != nullptr) std::copy(e.fingerprints.begin(), e.fingerprints.end(), fingerprints);
    }
    *count = n;
  });
}

S2FT_API s2ft_status s2ft_adapter_delta(const s2ft_adapter *adapter, int32_t layer, int32_t target, s2ft_tensor *out) {
  return s2ft::guard("s2ft_adapter_delta", [&] {
    const s2ft_adapter &a = s2ft::require_adapter(adapter);
    s2ft::check_layer(a.shape, layer);
    s2ft::check_target(target);
    const s2ft::AdapterEntry &e = a.layers[static_cast<size_t>(layer)][static_cast<size_t>(target)];
    if (out != nullptr && out->device.type != S2FT_DEVICE_CPU)
      s2ft::fail(S2FT_ERR_DEVICE, "out is on " + s2ft::device_name(out->device) + "; adapter deltas are copied to the CPU");
    const s2ft::Matrix m = s2ft::check_matrix(out, "out", s2ft::kCpu);
    if (e.empty()) s2ft::fail(S2FT_ERR_STATE, "the adapter has no entry for " + s2ft::where(layer, target));
    int64_t rows, cols;
    s2ft::delta_shape(a.shape, target, static_cast<int64_t>(e.lines.size()), &rows, &cols);
    s2ft::require_shape(m, "out", rows, cols);
    s2ft::from_f32(e.delta.data(), m, false);
  });
}

S2FT_API s2ft_status s2ft_adapter_set_sparse(s2ft_adapter *adapter, int32_t layer, int32_t weight,
                                             const int64_t *indices, int64_t count, const s2ft_tensor *delta,
                                             const s2ft_tensor *base) {
  return s2ft::guard("s2ft_adapter_set_sparse", [&] {
    using namespace s2ft;
    require_live(adapter, "adapter");
    const s2ft_model_shape &s = adapter->shape;
    check_layer(s, layer);
    check_weight_id(weight);
    int64_t rows, cols;
    weight_shape(s, weight, &rows, &cols);
    const int64_t size = weight_elements(s, weight);
    const std::string at = "layer " + std::to_string(layer) + " weight " + weight_name(weight);
    if (count < 0 || count > size)
      fail_arg("count " + std::to_string(count) + " is out of range [0, rows * cols = " + std::to_string(size) +
               "] for " + at);
    SparseEntry &slot = adapter->sparse[static_cast<size_t>(layer)][static_cast<size_t>(weight)];
    if (count == 0) {
      slot = SparseEntry{};
      adapter->entries_changed();
      return;
    }
    require_not_null(indices, "indices");
    check_no_low_rank(*adapter, layer, weight);
    // Hostile input: nothing beyond indices[count - 1] is read; no table is
    // sized by the model shape (which may be huge).
    for (int64_t i = 0; i < count; ++i) {
      const int64_t n = indices[i];
      if (n < 0 || n >= size)
        fail_arg("indices[" + std::to_string(i) + "] = " + std::to_string(n) + " is out of range [0, rows * cols = " +
                 std::to_string(size) + ") of " + at);
      if (i > 0 && n <= indices[i - 1])
        fail_arg("indices[" + std::to_string(i) + "] = " + std::to_string(n) +
                 (n == indices[i - 1] ? " repeats " : " is below ") + "indices[" + std::to_string(i - 1) + "] = " +
                 std::to_string(indices[i - 1]) + " (indices must ascend strictly)");
    }
    if (delta != nullptr && delta->device.type != S2FT_DEVICE_CPU)
      fail(S2FT_ERR_DEVICE, "delta is on " + device_name(delta->device) + "; adapters are built from CPU tensors");
    const Matrix d = check_vector(delta, "delta", kCpu, count);
    Matrix b;
    if (base != nullptr) {
      if (base->device.type != S2FT_DEVICE_CPU)
        fail(S2FT_ERR_DEVICE, "base is on " + device_name(base->device) + "; adapters are built from CPU tensors");
      b = check_matrix(base, "base", kCpu);
      require_shape(b, "base", rows, cols);
    }
    if (weight < S2FT_NUM_TARGETS) {
      const AdapterEntry &lines = adapter->layers[static_cast<size_t>(layer)][static_cast<size_t>(weight)];
      for (int64_t i = 0; i < count && !lines.empty(); ++i) {
        const int64_t line = element_line(weight, cols, indices[i]);
        if (std::binary_search(lines.lines.begin(), lines.lines.end(), line))
          fail_arg("indices[" + std::to_string(i) + "] = " + std::to_string(indices[i]) + " " +
                   element_text(indices[i], cols) + " lies on line " + std::to_string(line) +
                   " of the adapter's structured entry for " + where(layer, weight) +
                   " (a line and a sparse entry may not overlap: fold it into the line's delta)");
      }
    }
    SparseEntry e;
    e.indices.assign(indices, indices + count);
    e.delta.resize(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      const float v = d.get(0, i);
      if (!std::isfinite(v)) fail_arg("delta holds a non-finite value at element " + std::to_string(i));
      e.delta[static_cast<size_t>(i)] = v;
    }
    if (base != nullptr) e.fingerprint = weight_fingerprint(b);
    slot = std::move(e);
    adapter->entries_changed();
  });
}

S2FT_API s2ft_status s2ft_adapter_sparse(const s2ft_adapter *adapter, int32_t layer, int32_t weight, int64_t *indices,
                                         float *deltas, int64_t capacity, int64_t *count, uint64_t *fingerprint) {
  return s2ft::guard("s2ft_adapter_sparse", [&] {
    using namespace s2ft;
    const s2ft_adapter &a = require_adapter(adapter);
    require_not_null(count, "count");
    check_layer(a.shape, layer);
    check_weight_id(weight);
    const SparseEntry &e = a.sparse[static_cast<size_t>(layer)][static_cast<size_t>(weight)];
    const int64_t n = static_cast<int64_t>(e.indices.size());
    if ((indices != nullptr || deltas != nullptr) && capacity < n)
      fail_arg("capacity " + std::to_string(capacity) + " is below the " + std::to_string(n) +
               " sparse entries of layer " + std::to_string(layer) + " weight " + weight_name(weight));
    if (indices != nullptr) std::copy(e.indices.begin(), e.indices.end(), indices);
    if (deltas != nullptr) std::copy(e.delta.begin(), e.delta.end(), deltas);
    if (fingerprint != nullptr) *fingerprint = e.fingerprint;
    *count = n;
  });
}

S2FT_API s2ft_status s2ft_adapter_sparse_info(const s2ft_adapter *adapter, uint32_t *weights, int64_t *entries) {
  return s2ft::guard("s2ft_adapter_sparse_info", [&] {
    const s2ft_adapter &a = s2ft::require_adapter(adapter);
    uint32_t mask = 0;
    int64_t total = 0;
    for (const auto &layer : a.sparse)
      for (int32_t w = 0; w < S2FT_NUM_WEIGHTS; ++w) {
        const s2ft::SparseEntry &e = layer[static_cast<size_t>(w)];
        if (e.empty()) continue;
        mask |= S2FT_WEIGHT_BIT(w);
        total += static_cast<int64_t>(e.indices.size());
      }
    if (weights != nullptr) *weights = mask;
    if (entries != nullptr) *entries = total;
  });
}

S2FT_API s2ft_status s2ft_adapter_upload(s2ft_context *ctx, const s2ft_adapter *adapter) {
  return s2ft::guard("s2ft_adapter_upload", [&] {
    s2ft_context &c = s2ft::require_context(ctx);
    s2ft::run(c, &s2ft::backend::Ops::adapter_upload, s2ft::require_adapter(adapter));
  });
}

}  // extern "C"
