// The adapter object behind s2ft_adapter, the model object behind
// s2ft_model, and the per-target geometry both rely on.
#pragma once

#include "common/live_handles.hpp"
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/tensor.hpp"
#include "model_shape.hpp"
#include "s2ft/s2ft.h"
#include "select/selection.hpp"

namespace s2ft {

// One (layer, target) of an adapter.
struct AdapterEntry {
  std::vector<int64_t> lines;          // ascending, base order, distinct
  std::vector<uint64_t> fingerprints;  // one per line; 0 = unknown (never checked)
  std::vector<float> delta;            // row-major [out, k] (columns) or [k, in] (rows)
  bool empty() const { return lines.empty(); }
};

// The unstructured sparse entries of one (layer, weight) of an adapter.
struct SparseEntry {
  std::vector<int64_t> indices;  // strictly ascending flat indices r * cols + c into the base-order weight
  std::vector<float> delta;      // one finite value per index
  uint64_t fingerprint = 0;      // whole-weight base fingerprint (weight_fingerprint); 0 = unknown
  bool empty() const { return indices.empty(); }
};

// The low-rank entry of one (layer, weight) of an adapter: delta = b a.
struct LowRankEntry {
  int64_t rank = 0;          // k; 0 = no entry
  std::vector<float> b, a;   // row-major [rows, k] and [k, cols], finite
  uint64_t fingerprint = 0;  // whole-weight base fingerprint (weight_fingerprint); 0 = unknown
  bool empty() const { return rank == 0; }
};

// ---- per-target geometry (the shape-only part is in model_shape.hpp) -------

// The weight of `target` in a layer's weights (o, v, down or up; may be NULL).
s2ft_tensor *target_weight(const s2ft_layer_weights &w, int32_t target);
// Hugging Face tensor name stem, e.g. "model.layers.3.mlp.down_proj".
std::string target_tensor_stem(int32_t layer, int32_t target);

// Position of base line `line` of (layer, target) in a weight permuted by `sel`.
int64_t permuted_line(const s2ft_selection &sel, int32_t layer, int32_t target, int64_t line);

// ---- per-weight geometry of sparse entries (the seven weights) ---------------------

// The weight `weight` (S2FT_WEIGHT_*) of a layer's weights (may be NULL).
s2ft_tensor *layer_weight(const s2ft_layer_weights &w, int32_t weight);
// The s2ft_layer_weights field name of a weight: "q", "k", "v", "o", "gate", "up", "down".
const char *weight_field(int32_t weight);
// Hugging Face tensor name stem of any weight, e.g. "model.layers.3.self_attn.q_proj".
std::string weight_tensor_stem(int32_t layer, int32_t weight);

// Where the base rows and columns of (layer, weight) sit in a weight permuted
// by `sel`: q rows by query head, k and v rows by KV head, o columns by
// query head, gate and up rows and down columns by channel; the other axis
// is not permuted (its map is empty: the identity).
struct ElementMap {
  std::vector<int64_t> rows, cols;  // base index -> position; empty = identity
  int64_t n_cols = 0;               // columns of the weight
  int64_t row(int64_t r) const { return rows.empty() ? r : rows[static_cast<size_t>(r)]; }
  int64_t col(int64_t c) const { return cols.empty() ? c : cols[static_cast<size_t>(c)]; }
  // The position of base flat index n (r * n_cols + c).
  int64_t position(int64_t n) const { return row(n / n_cols) * n_cols + col(n % n_cols); }
};
// The map of (layer, weight) under `sel` (NULL: the identity).
ElementMap element_map(const s2ft_selection *sel, const s2ft_model_shape &shape, int32_t layer, int32_t weight);

// The structured line (0..3 weights) that flat index n of a [rows, cols]
// target weight lies on: its column for O and DOWN, its row for V and UP.
inline int64_t element_line(int32_t target, int64_t cols, int64_t n) {
  return target == S2FT_TARGET_O || target == S2FT_TARGET_DOWN ? n % cols : n / cols;
}

// ---- adapter files ---------------------------------------------------------------

// Reads an adapter from the bytes of an adapter file with every check that
// s2ft_adapter_load makes (it is the same code after the file is read), so
// that in-memory callers such as the fuzzers need no file; `what` names the
// image in messages. Throws s2ft::Error (S2FT_ERR_FORMAT).
std::unique_ptr<s2ft_adapter> adapter_from_image(std::vector<uint8_t> bytes, const std::string &what);

// ---- names and metadata ----------------------------------------------------------

// True when s holds well-formed UTF-8 (no overlongs, surrogates or code
// points above U+10FFFF), so it can go into a file's JSON header.
bool valid_utf8(const std::string &s);

// Limits of adapter metadata (s2ft_adapter_set_meta).
constexpr size_t kMaxMetaKeyBytes = 255;
constexpr size_t kMaxMetaValueBytes = 65536;
constexpr size_t kMaxMetaEntries = 256;
// Metadata key K is stored in a file's __metadata__ as kMetaFilePrefix + K.
inline const char *const kMetaFilePrefix = "meta.";

// Why `key` is not a valid metadata key ("is empty", "is longer than 255
// bytes", "holds ' ' at byte 3 (keys use only ...)"), or "" when it is.
std::string meta_key_problem(const std::string &key);
// Why `value` is not a valid metadata value, or "" when it is.
std::string meta_value_problem(const std::string &value);

// ---- fingerprints -------------------------------------------------------------

// The fingerprint (common/fingerprint.hpp) of one line of w (axis COLUMNS:
// w[0..rows, line]; ROWS: w[line, 0..cols]). Never 0 (0 means "unknown").
uint64_t line_fingerprint(const Matrix &w, int32_t axis, int64_t line);
// The whole-weight fingerprint of a base-order weight (sparse entries):
// FNV-1a over its row fingerprints, each as 8 little-endian bytes, rows in
// order (fingerprint::mix_u64). Never 0.
uint64_t weight_fingerprint(const Matrix &w);
// The same from the row fingerprints in base row order.
uint64_t combine_row_fingerprints(const std::vector<uint64_t> &rows);

}  // namespace s2ft

namespace s2ft {
namespace backend {
// A backend's copy of an adapter's entries on one of its devices (defined by
// the backend that makes it: kernels/cuda_adapter_mirror.cu).
struct AdapterCopy;
}  // namespace backend
}  // namespace s2ft

struct s2ft_adapter {
  s2ft::LiveHandle<s2ft::HandleKind::adapter> live;  // first: counted, and tagged while alive
  s2ft_model_shape shape{};
  std::string name;
  double default_scale = 1.0;
  std::vector<std::array<s2ft::AdapterEntry, S2FT_NUM_TARGETS>> layers;  // n_layers
  // Unstructured sparse entries per (layer, weight), n_layers. Invariant: no
  // index lies on a line of layers[l][w]'s structured entry (w < 4).
  std::vector<std::array<s2ft::SparseEntry, S2FT_NUM_WEIGHTS>> sparse;
  // Low-rank entries per (layer, weight), n_layers. Invariant: where one is
  // set, layers[l][w] (w < 4) and sparse[l][w] are empty.
  std::vector<std::array<s2ft::LowRankEntry, S2FT_NUM_WEIGHTS>> low_rank;
  // Free key/value metadata, keys ascending (valid: meta_key_problem and
  // meta_value_problem are "", at most kMaxMetaEntries). Not part of what
  // the device copies or max_abs depend on.
  std::map<std::string, std::string> meta;

  // What is derived from the entries and kept until one changes (revision
  // counts the changes): the device copies, one per device, made by a
  // device backend on first use, and the largest |delta| of each entry
  // (max_abs_delta). Guarded by mirror_mutex: const adapters are shared by
  // threads.
  uint64_t revision = 0;
  mutable std::mutex mirror_mutex;
  mutable std::vector<std::shared_ptr<s2ft::backend::AdapterCopy>> mirrors;
  // [layer][target] for the structured entries, then [layer][S2FT_NUM_TARGETS + weight] for the sparse ones.
  mutable std::vector<std::array<double, S2FT_NUM_TARGETS + S2FT_NUM_WEIGHTS>> max_abs;  // for max_abs_revision
  mutable uint64_t max_abs_revision = UINT64_MAX;

  // The largest |delta| of the (layer, target) entry (0 when empty),
  // computed for every entry on the first call after a change.
  double max_abs_delta(int32_t layer, int32_t target) const;
  // The same for the sparse entries of (layer, weight).
  double max_abs_sparse_delta(int32_t layer, int32_t weight) const;
  // True when some layer has sparse entries.
  bool has_sparse() const;
  // True when some layer has a low-rank entry.
  bool has_low_rank() const;

  // Call after changing `layers`.
  void entries_changed() {
    std::lock_guard<std::mutex> lock(mirror_mutex);
    ++revision;
    mirrors.clear();
  }
};
