// Adapter files: safetensors named after the base model's tensors
// (docs/adapter-format.md). Per non-empty (layer, target), with
// stem = target_tensor_stem(layer, target):
//   <stem>.s2ft_lines             I64 [k]                 base-order lines, ascending
//   <stem>.s2ft_delta             F32 [out, k] / [k, in]  the delta slice
//   <stem>.s2ft_base_fingerprint  U64 [k]                 base-line fingerprints
// and, per (layer, weight) with sparse entries, stem = weight_tensor_stem
// (any of the seven weights), format version 3 only:
//   <stem>.s2ft_sparse_indices           I64 [count]  flat indices, ascending
//   <stem>.s2ft_sparse_delta             F32 [count]  their deltas
//   <stem>.s2ft_sparse_base_fingerprint  U64 [1]      whole-weight fingerprint
// and, per (layer, weight) with a low-rank entry (delta = b a), format
// version 4 only:
//   <stem>.s2ft_low_rank_b                 F32 [rows, k]
//   <stem>.s2ft_low_rank_a                 F32 [k, cols]
//   <stem>.s2ft_low_rank_base_fingerprint  U64 [1]      whole-weight fingerprint
// and __metadata__ with the format, version, name, default scale, targets,
// model shape, axis convention and a "slices" summary (version 3 adds a
// "sparse" summary, version 4 a "low_rank" one), plus the adapter's own
// metadata, key K stored as "meta.K" (optional: a file without any loads
// with no metadata; other keys are ignored). Each file has the lowest
// version that holds its entries: an adapter with only structured entries
// is version 2, byte for byte as before sparse entries existed, so older
// readers keep reading it; one with sparse entries is version 3, one with
// low-rank entries version 4, which older readers refuse.
//
// The reader treats the file as hostile. The safetensors layer has checked
// the container (header, JSON, offsets, overlaps, dtype sizes, byte counts)
// before anything here runs; this file checks that the content is an
// adapter: every metadata field, every tensor name, dtype, shape and index,
// finite deltas, and that the summary agrees with the tensors. Nothing is
// allocated in proportion to the metadata's model shape except the layer
// table, whose size is capped.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "adapter/adapter.hpp"
#include "common/error.hpp"
#include "io/safetensors.hpp"
#include "io/strict_json.hpp"
#include "model_shape.hpp"
#include "select/selection.hpp"

namespace s2ft {
namespace {

const char *const kFormat = "s2ft-adapter";
// Version 2: base fingerprints hash bf16-rounded values (common/fingerprint.hpp).
const char *const kVersion = "2";
// Version 3: version 2 plus unstructured sparse entries (written only when an
// adapter has some, so that every other file stays readable by version-2 readers).
const char *const kVersionSparse = "3";
// Version 4: version 3 plus low-rank entries (written only when an adapter has some).
const char *const kVersionLowRank = "4";
const char *const kAxes = "O:columns,V:rows,DOWN:columns,UP:rows";
const char *const kLinesSuffix = ".s2ft_lines";
const char *const kDeltaSuffix = ".s2ft_delta";
const char *const kFingerprintSuffix = ".s2ft_base_fingerprint";
const char *const kSparseIndicesSuffix = ".s2ft_sparse_indices";
const char *const kSparseDeltaSuffix = ".s2ft_sparse_delta";
const char *const kSparseFingerprintSuffix = ".s2ft_sparse_base_fingerprint";
const char *const kLowRankBSuffix = ".s2ft_low_rank_b";
const char *const kLowRankASuffix = ".s2ft_low_rank_a";
const char *const kLowRankFingerprintSuffix = ".s2ft_low_rank_base_fingerprint";
constexpr size_t kMaxNameBytes = 255;
// Bounds the one allocation sized by metadata alone (the layer table).
constexpr int64_t kMaxLayers = 65536;
constexpr size_t kMaxSlicesDepth = 4;


const char *const kShapeKeys[6] = {"n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff"};
int32_t *shape_field(s2ft_model_shape &s, int i) {
  int32_t *f[6] = {&s.n_layers, &s.d_model, &s.n_heads, &s.n_kv_heads, &s.head_dim, &s.d_ff};
  return f[i];
}

const char *axis_name(int32_t target) { return target_axis(target) == S2FT_AXIS_COLUMNS ? "columns" : "rows"; }

std::string num(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

std::string hex64(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// 64-bit FNV-1a over the little-endian bytes of a slice's per-line
// fingerprints, in line order: one number that summarises the slice's base.
uint64_t slice_fingerprint(const std::vector<uint64_t> &fps) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint64_t f : fps)
    for (int b = 0; b < 8; ++b) {
      h ^= (f >> (8 * b)) & 0xffu;
      h *= 0x100000001b3ull;
    }
  return h;
}

// A name from a hostile file, quoted and reduced to printable ASCII.
std::string quoted(const std::string &s) {
  std::string out = "\"";
  for (char c : s.substr(0, 200)) {
    const unsigned char u = static_cast<unsigned char>(c);
    out += u < 0x20 || u > 0x7e || c == '"' || c == '\\' ? '?' : c;
  }
  if (s.size() > 200) out += "...";
  return out + "\"";
}

[[noreturn]] void bad(const std::string &path, const std::string &message) {
  fail(S2FT_ERR_FORMAT, "'" + path + "' is not a valid s2ft adapter file: " + message);
}

const std::string &meta(const io::SafetensorsFile &f, const char *key, const std::string &path) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end()) bad(path, std::string("its __metadata__ has no \"") + key + "\"");
  return it->second;
}

// A decimal integer in [1, INT32_MAX]: digits only, no sign, no leading zero.
int32_t parse_positive_i32(const std::string &s, const std::string &key, const std::string &path) {
  bool ok = !s.empty() && s.size() <= 10 && s[0] != '0';
  for (char c : s) ok = ok && c >= '0' && c <= '9';
  const long long v = ok ? std::strtoll(s.c_str(), nullptr, 10) : 0;
  if (!ok || v > 2147483647LL)
    bad(path, "metadata \"" + key + "\" = " + quoted(s) + " is not a positive 32-bit decimal integer");
  return static_cast<int32_t>(v);
}

// A finite number as %.17g writes it (no leading space, nothing after it).
double parse_finite(const std::string &s, const std::string &key, const std::string &path) {
  const bool starts_ok = !s.empty() && (s[0] == '-' || s[0] == '+' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9'));
  char *end = nullptr;
  errno = 0;
  const double v = starts_ok ? std::strtod(s.c_str(), &end) : 0.0;
  if (!starts_ok || errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v))
    bad(path, "metadata \"" + key + "\" = " + quoted(s) + " is not a finite number");
  return v;
}

int32_t target_from_name(const std::string &s) {
  for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t)
    if (s == target_name(t)) return t;
  return -1;
}

// "O,DOWN": the targets with an entry, in target order.
std::string targets_text(uint32_t mask) {
  std::string out;
  for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t)
    if (mask & S2FT_TARGET_BIT(t)) out += (out.empty() ? "" : ",") + std::string(target_name(t));
  return out;
}

uint32_t parse_targets(const std::string &s, const std::string &path) {
  uint32_t mask = 0;
  if (s.empty()) return 0;
  size_t start = 0;
  while (true) {
    const size_t comma = s.find(',', start);
    const std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const int32_t t = target_from_name(item);
    if (t < 0) bad(path, "metadata \"targets\" = " + quoted(s) + " names an unknown target " + quoted(item));
    if (mask & S2FT_TARGET_BIT(t)) bad(path, "metadata \"targets\" = " + quoted(s) + " lists " + item + " twice");
    mask |= S2FT_TARGET_BIT(t);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return mask;
}

// Splits "<stem><suffix>" into (layer, target, kind) for a canonical stem
// model.layers.<layer>.<...>: kinds 0/1/2 are the structured tensors (lines,
// delta, fingerprints) of the four targets' stems, kinds 3/4/5 the sparse
// ones (indices, delta, fingerprint) and kinds 6/7/8 the low-rank ones (b,
// a, fingerprint) of the seven weights' stems (then *target is the weight
// id); false when the name is anything else.
bool parse_tensor_name(const std::string &name, const s2ft_model_shape &shape, int32_t *layer, int32_t *target,
                       int *kind) {
  const char *suffixes[9] = {kLinesSuffix,         kDeltaSuffix,       kFingerprintSuffix,
                             kSparseIndicesSuffix, kSparseDeltaSuffix, kSparseFingerprintSuffix,
                             kLowRankBSuffix,      kLowRankASuffix,    kLowRankFingerprintSuffix};
  const std::string prefix = "model.layers.";
  for (int k = 0; k < 9; ++k) {
    const size_t sl = std::strlen(suffixes[k]);
    if (name.size() <= sl + prefix.size() || name.compare(name.size() - sl, sl, suffixes[k]) != 0) continue;
    const std::string stem = name.substr(0, name.size() - sl);
    if (stem.compare(0, prefix.size(), prefix) != 0) return false;
    size_t i = prefix.size(), digits = 0;
    long long l = 0;
    while (i < stem.size() && stem[i] >= '0' && stem[i] <= '9' && digits < 11) {
      l = l * 10 + (stem[i] - '0');
      ++i, ++digits;
    }
    if (digits == 0 || digits > 10 || l >= shape.n_layers) return false;
    for (int32_t t = 0; t < (k < 3 ? S2FT_NUM_TARGETS : S2FT_NUM_WEIGHTS); ++t)
      if (stem == weight_tensor_stem(static_cast<int32_t>(l), t)) {
        *layer = static_cast<int32_t>(l);
        *target = t;
        *kind = k;
        return true;
      }
    return false;
  }
  return false;
}

// The three tensors of one (layer, target) as found in the file.
struct Found {
  const io::TensorInfo *part[3] = {nullptr, nullptr, nullptr};  // lines, delta, fingerprints
};

// Reads and checks one entry's tensors into an AdapterEntry.
AdapterEntry read_entry(const io::SafetensorsFile &f, const Found &found, const s2ft_model_shape &shape, int32_t layer,
                        int32_t target, const std::string &path) {
  const std::string stem = target_tensor_stem(layer, target);
  const char *suffixes[3] = {kLinesSuffix, kDeltaSuffix, kFingerprintSuffix};
  const char *dtypes[3] = {"I64", "F32", "U64"};
  for (int k = 0; k < 3; ++k) {
    if (found.part[k] == nullptr)
      bad(path, "tensor \"" + stem + suffixes[k] + "\" is missing (every slice needs " + kLinesSuffix + ", " +
                    kDeltaSuffix + " and " + kFingerprintSuffix + ")");
    if (found.part[k]->dtype != dtypes[k])
      bad(path, "tensor \"" + stem + suffixes[k] + "\" has dtype " + quoted(found.part[k]->dtype) + ", expected " +
                    dtypes[k]);
  }
  const io::TensorInfo &li = *found.part[0], &di = *found.part[1], &fi = *found.part[2];
  if (li.shape.size() != 1) bad(path, "tensor \"" + li.name + "\" must have rank 1, got rank " + std::to_string(li.shape.size()));
  const int64_t k = li.shape[0];
  if (k < 1) bad(path, "tensor \"" + li.name + "\" is empty (an empty slice is not stored)");
  if (fi.shape.size() != 1 || fi.shape[0] != k)
    bad(path, "tensor \"" + fi.name + "\" must have shape [" + std::to_string(k) + "] like \"" + li.name + "\"");
  const int32_t axis = target_axis(target);
  const int64_t len = target_line_length(shape, target), n_avail = target_line_count(shape, target);
  const int64_t want_r = axis == S2FT_AXIS_COLUMNS ? len : k, want_c = axis == S2FT_AXIS_COLUMNS ? k : len;
  if (di.shape.size() != 2 || di.shape[0] != want_r || di.shape[1] != want_c) {
    std::string got;
    for (size_t i = 0; i < di.shape.size(); ++i) got += (i ? ", " : "") + std::to_string(di.shape[i]);
    bad(path, "tensor \"" + di.name + "\" has shape [" + got + "], expected [" + std::to_string(want_r) + ", " +
                  std::to_string(want_c) + "] (" + axis_name(target) + " slice of k = " + std::to_string(k) +
                  " lines; the k of \"" + li.name + "\" and the model shape)");
  }

  AdapterEntry e;
  e.lines.resize(static_cast<size_t>(k));
  e.fingerprints.resize(static_cast<size_t>(k));
  e.delta.resize(static_cast<size_t>(k * len));
  std::memcpy(e.lines.data(), f.data(li), e.lines.size() * sizeof(int64_t));
  std::memcpy(e.fingerprints.data(), f.data(fi), e.fingerprints.size() * sizeof(uint64_t));
  std::memcpy(e.delta.data(), f.data(di), e.delta.size() * sizeof(float));
  // Lines must be strictly ascending: that rules out duplicates and keeps
  // the one order every reader of the adapter assumes.
  for (int64_t i = 0; i < k; ++i) {
    const int64_t l = e.lines[static_cast<size_t>(i)];
    if (l < 0 || l >= n_avail)
      bad(path, "tensor \"" + li.name + "\" element " + std::to_string(i) + " = " + std::to_string(l) +
                    " is out of range [0, " + std::to_string(n_avail) + ")");
    if (i > 0 && l == e.lines[static_cast<size_t>(i - 1)])
      bad(path, "tensor \"" + li.name + "\" holds line " + std::to_string(l) + " twice (duplicate index)");
    if (i > 0 && l < e.lines[static_cast<size_t>(i - 1)])
      bad(path, "tensor \"" + li.name + "\" is not ascending at element " + std::to_string(i));
  }
  for (size_t j = 0; j < e.delta.size(); ++j)
    if (!std::isfinite(e.delta[j]))
      bad(path, "tensor \"" + di.name + "\" holds a non-finite value (NaN or Inf) at element " + std::to_string(j));
  return e;
}

// The three tensors of one (layer, weight)'s sparse entries as found in the file.
struct FoundSparse {
  const io::TensorInfo *part[3] = {nullptr, nullptr, nullptr};  // indices, delta, fingerprint
};

// Reads and checks one (layer, weight)'s sparse entries.
SparseEntry read_sparse(const io::SafetensorsFile &f, const FoundSparse &found, const s2ft_model_shape &shape,
                        int32_t layer, int32_t weight, const std::string &path) {
  const std::string stem = weight_tensor_stem(layer, weight);
  const char *suffixes[3] = {kSparseIndicesSuffix, kSparseDeltaSuffix, kSparseFingerprintSuffix};
  const char *dtypes[3] = {"I64", "F32", "U64"};
  for (int k = 0; k < 3; ++k) {
    if (found.part[k] == nullptr)
      bad(path, "tensor \"" + stem + suffixes[k] + "\" is missing (sparse entries need " + kSparseIndicesSuffix + ", " +
                    kSparseDeltaSuffix + " and " + kSparseFingerprintSuffix + ")");
    if (found.part[k]->dtype != dtypes[k])
      bad(path, "tensor \"" + stem + suffixes[k] + "\" has dtype " + quoted(found.part[k]->dtype) + ", expected " +
                    dtypes[k]);
  }
  const io::TensorInfo &ii = *found.part[0], &di = *found.part[1], &fi = *found.part[2];
  if (ii.shape.size() != 1)
    bad(path, "tensor \"" + ii.name + "\" must have rank 1, got rank " + std::to_string(ii.shape.size()));
  const int64_t count = ii.shape[0];
  const int64_t size = weight_elements(shape, weight);
  if (count < 1) bad(path, "tensor \"" + ii.name + "\" is empty (empty sparse entries are not stored)");
  if (count > size)
    bad(path, "tensor \"" + ii.name + "\" holds " + std::to_string(count) + " indices, more than the " +
                  std::to_string(size) + " elements of the weight");
  if (di.shape.size() != 1 || di.shape[0] != count)
    bad(path, "tensor \"" + di.name + "\" must have shape [" + std::to_string(count) + "] like \"" + ii.name + "\"");
  if (fi.shape.size() != 1 || fi.shape[0] != 1)
    bad(path, "tensor \"" + fi.name + "\" must have shape [1] (one fingerprint of the whole base weight)");

  SparseEntry e;
  e.indices.resize(static_cast<size_t>(count));
  e.delta.resize(static_cast<size_t>(count));
  std::memcpy(e.indices.data(), f.data(ii), e.indices.size() * sizeof(int64_t));
  std::memcpy(e.delta.data(), f.data(di), e.delta.size() * sizeof(float));
  std::memcpy(&e.fingerprint, f.data(fi), sizeof(uint64_t));
  for (int64_t i = 0; i < count; ++i) {
    const int64_t n = e.indices[static_cast<size_t>(i)];
    if (n < 0 || n >= size)
      bad(path, "tensor \"" + ii.name + "\" element " + std::to_string(i) + " = " + std::to_string(n) +
                    " is out of range [0, " + std::to_string(size) + ")");
    if (i > 0 && n == e.indices[static_cast<size_t>(i - 1)])
      bad(path, "tensor \"" + ii.name + "\" holds index " + std::to_string(n) + " twice (duplicate index)");
    if (i > 0 && n < e.indices[static_cast<size_t>(i - 1)])
      bad(path, "tensor \"" + ii.name + "\" is not ascending at element " + std::to_string(i));
  }
  for (size_t j = 0; j < e.delta.size(); ++j)
    if (!std::isfinite(e.delta[j]))
      bad(path, "tensor \"" + di.name + "\" holds a non-finite value (NaN or Inf) at element " + std::to_string(j));
  return e;
}

// The three tensors of one (layer, weight)'s low-rank entry as found in the file.
struct FoundLowRank {
  const io::TensorInfo *part[3] = {nullptr, nullptr, nullptr};  // b, a, fingerprint
};

// Reads and checks one (layer, weight)'s low-rank entry.
LowRankEntry read_low_rank(const io::SafetensorsFile &f, const FoundLowRank &found, const s2ft_model_shape &shape,
                           int32_t layer, int32_t weight, const std::string &path) {
  const std::string stem = weight_tensor_stem(layer, weight);
  const char *suffixes[3] = {kLowRankBSuffix, kLowRankASuffix, kLowRankFingerprintSuffix};
  const char *dtypes[3] = {"F32", "F32", "U64"};
  for (int k = 0; k < 3; ++k) {
    if (found.part[k] == nullptr)
      bad(path, "tensor \"" + stem + suffixes[k] + "\" is missing (a low-rank entry needs " + kLowRankBSuffix + ", " +
                    kLowRankASuffix + " and " + kLowRankFingerprintSuffix + ")");
    if (found.part[k]->dtype != dtypes[k])
      bad(path, "tensor \"" + stem + suffixes[k] + "\" has dtype " + quoted(found.part[k]->dtype) + ", expected " +
                    dtypes[k]);
  }
  const io::TensorInfo &bi = *found.part[0], &ai = *found.part[1], &fi = *found.part[2];
  int64_t rows, cols;
  weight_shape(shape, weight, &rows, &cols);
  if (bi.shape.size() != 2 || bi.shape[0] != rows || bi.shape[1] < 1)
    bad(path, "tensor \"" + bi.name + "\" must have shape [" + std::to_string(rows) + ", k] with k >= 1 (the weight's " +
                  std::to_string(rows) + " rows)");
  const int64_t k = bi.shape[1];
  if (ai.shape.size() != 2 || ai.shape[0] != k || ai.shape[1] != cols)
    bad(path, "tensor \"" + ai.name + "\" must have shape [" + std::to_string(k) + ", " + std::to_string(cols) +
                  "] (the k of \"" + bi.name + "\" and the weight's columns)");
  if (fi.shape.size() != 1 || fi.shape[0] != 1)
    bad(path, "tensor \"" + fi.name + "\" must have shape [1] (one fingerprint of the whole base weight)");
  LowRankEntry e;
  e.rank = k;
  e.b.resize(static_cast<size_t>(rows * k));
  e.a.resize(static_cast<size_t>(k * cols));
  std::memcpy(e.b.data(), f.data(bi), e.b.size() * sizeof(float));
  std::memcpy(e.a.data(), f.data(ai), e.a.size() * sizeof(float));
  std::memcpy(&e.fingerprint, f.data(fi), sizeof(uint64_t));
  for (const auto *part : {&e.b, &e.a})
    for (size_t j = 0; j < part->size(); ++j)
      if (!std::isfinite((*part)[j]))
        bad(path, "tensor \"" + (part == &e.b ? bi.name : ai.name) + "\" holds a non-finite value (NaN or Inf) at element " +
                      std::to_string(j));
  return e;
}

// The invariant of the low-rank setters: a (layer, weight) with a low-rank
// entry has no structured entry and no sparse entries.
void check_low_rank_alone(const s2ft_adapter &a, int32_t layer, int32_t weight, const std::string &path) {
  const std::string stem = weight_tensor_stem(layer, weight);
  if (weight < S2FT_NUM_TARGETS && !a.layers[static_cast<size_t>(layer)][static_cast<size_t>(weight)].empty())
    bad(path, "tensor \"" + stem + kLowRankBSuffix + "\" is a low-rank entry of a weight the file also stores "
                  "structured lines of (a low-rank entry changes the whole weight)");
  if (!a.sparse[static_cast<size_t>(layer)][static_cast<size_t>(weight)].empty())
    bad(path, "tensor \"" + stem + kLowRankBSuffix + "\" is a low-rank entry of a weight the file also stores "
                  "sparse entries of (a low-rank entry changes the whole weight)");
}

// The "low_rank" summary (format version 4): a JSON array with one object
// per stored low-rank entry, in any order, exactly
// {"tensor": stem, "weight": name, "rank": k, "fingerprint": 16 hex digits}.
void check_low_rank_summary(const std::string &text, const s2ft_adapter &a, const std::string &path) {
  const nlohmann::ordered_json list = io::parse_strict_json(
      text.data(), text.data() + text.size(), kMaxSlicesDepth,
      [&](const std::string &m) { bad(path, "metadata \"low_rank\": " + m); });
  if (!list.is_array()) bad(path, "metadata \"low_rank\" must be a JSON array");
  std::map<std::string, std::pair<int32_t, int32_t>> stored;  // stem -> (layer, weight)
  for (int32_t l = 0; l < a.shape.n_layers; ++l)
    for (int32_t w = 0; w < S2FT_NUM_WEIGHTS; ++w)
      if (!a.low_rank[static_cast<size_t>(l)][static_cast<size_t>(w)].empty()) stored[weight_tensor_stem(l, w)] = {l, w};
  if (list.size() != stored.size())
    bad(path, "metadata \"low_rank\" lists " + std::to_string(list.size()) + " entries but the file stores " +
                  std::to_string(stored.size()));
  std::set<std::string> seen;
  for (size_t i = 0; i < list.size(); ++i) {
    const nlohmann::ordered_json &s = list[i];
    const std::string at = "metadata \"low_rank\"[" + std::to_string(i) + "]";
    if (!s.is_object() || s.size() != 4) bad(path, at + " must be an object with tensor, weight, rank, fingerprint");
    for (const char *key : {"tensor", "weight", "fingerprint"})
      if (!s.contains(key) || !s[key].is_string()) bad(path, at + " has no string \"" + key + "\"");
    if (!s.contains("rank") || !s["rank"].is_number_integer()) bad(path, at + " has no integer \"rank\"");
    const std::string tensor = s["tensor"].get<std::string>();
    auto it = stored.find(tensor);
    if (it == stored.end()) bad(path, at + " names " + quoted(tensor) + ", which has no stored low-rank entry");
    if (!seen.insert(tensor).second) bad(path, at + " lists " + quoted(tensor) + " a second time");
    const int32_t layer = it->second.first, weight = it->second.second;
    const LowRankEntry &e = a.low_rank[static_cast<size_t>(layer)][static_cast<size_t>(weight)];
    if (s["weight"].get<std::string>() != weight_name(weight))
      bad(path, at + " gives weight " + quoted(s["weight"].get<std::string>()) + " for " + quoted(tensor));
    if (s["rank"].get<int64_t>() != e.rank)
      bad(path, at + " gives rank = " + std::to_string(s["rank"].get<int64_t>()) + " but the tensors have rank " +
                    std::to_string(e.rank));
    if (s["fingerprint"].get<std::string>() != hex64(e.fingerprint))
      bad(path, at + " gives fingerprint " + quoted(s["fingerprint"].get<std::string>()) + " for " + quoted(tensor) +
                    " but its fingerprint tensor holds " + hex64(e.fingerprint) + " (inconsistent low_rank metadata)");
  }
}

// The invariant of s2ft_adapter_set_sparse: no sparse entry of (layer, w)
// lies on a line of the structured entry of the same (layer, w).
void check_no_overlap(const s2ft_adapter &a, int32_t layer, int32_t weight, const std::string &path) {
  if (weight >= S2FT_NUM_TARGETS) return;
  const AdapterEntry &lines = a.layers[static_cast<size_t>(layer)][static_cast<size_t>(weight)];
  const SparseEntry &sp = a.sparse[static_cast<size_t>(layer)][static_cast<size_t>(weight)];
  if (lines.empty() || sp.empty()) return;
  int64_t rows, cols;
  weight_shape(a.shape, weight, &rows, &cols);
  for (size_t i = 0; i < sp.indices.size(); ++i) {
    const int64_t line = element_line(weight, cols, sp.indices[i]);
    if (std::binary_search(lines.lines.begin(), lines.lines.end(), line))
      bad(path, "tensor \"" + weight_tensor_stem(layer, weight) + kSparseIndicesSuffix + "\" element " +
                    std::to_string(i) + " = " + std::to_string(sp.indices[i]) + " lies on line " +
                    std::to_string(line) + ", which the file also stores as a structured line (a line and a sparse "
                    "entry may not overlap)");
  }
}

// The "sparse" summary (format version 3): a JSON array with one object per
// stored (layer, weight) with sparse entries, in any order, exactly
// {"tensor": stem, "weight": name, "count": n, "fingerprint": 16 hex digits}.
void check_sparse_summary(const std::string &text, const s2ft_adapter &a, const std::string &path) {
  const nlohmann::ordered_json list = io::parse_strict_json(
      text.data(), text.data() + text.size(), kMaxSlicesDepth,
      [&](const std::string &m) { bad(path, "metadata \"sparse\": " + m); });
  if (!list.is_array()) bad(path, "metadata \"sparse\" must be a JSON array");
  std::map<std::string, std::pair<int32_t, int32_t>> stored;  // stem -> (layer, weight)
  for (int32_t l = 0; l < a.shape.n_layers; ++l)
    for (int32_t w = 0; w < S2FT_NUM_WEIGHTS; ++w)
      if (!a.sparse[static_cast<size_t>(l)][static_cast<size_t>(w)].empty()) stored[weight_tensor_stem(l, w)] = {l, w};
  if (list.size() != stored.size())
    bad(path, "metadata \"sparse\" lists " + std::to_string(list.size()) + " weights but the file stores sparse "
                  "entries of " + std::to_string(stored.size()));
  std::set<std::string> seen;
  for (size_t i = 0; i < list.size(); ++i) {
    const nlohmann::ordered_json &s = list[i];
    const std::string at = "metadata \"sparse\"[" + std::to_string(i) + "]";
    if (!s.is_object() || s.size() != 4) bad(path, at + " must be an object with tensor, weight, count, fingerprint");
    for (const char *key : {"tensor", "weight", "fingerprint"})
      if (!s.contains(key) || !s[key].is_string()) bad(path, at + " has no string \"" + key + "\"");
    if (!s.contains("count") || !s["count"].is_number_integer()) bad(path, at + " has no integer \"count\"");
    const std::string tensor = s["tensor"].get<std::string>();
    auto it = stored.find(tensor);
    if (it == stored.end()) bad(path, at + " names " + quoted(tensor) + ", which has no stored sparse entries");
    if (!seen.insert(tensor).second) bad(path, at + " lists " + quoted(tensor) + " a second time");
    const int32_t layer = it->second.first, weight = it->second.second;
    const SparseEntry &e = a.sparse[static_cast<size_t>(layer)][static_cast<size_t>(weight)];
    if (s["weight"].get<std::string>() != weight_name(weight))
      bad(path, at + " gives weight " + quoted(s["weight"].get<std::string>()) + " for " + quoted(tensor));
    if (s["count"].get<int64_t>() != static_cast<int64_t>(e.indices.size()))
      bad(path, at + " gives count = " + std::to_string(s["count"].get<int64_t>()) + " but the tensors hold " +
                    std::to_string(e.indices.size()) + " entries");
    if (s["fingerprint"].get<std::string>() != hex64(e.fingerprint))
      bad(path, at + " gives fingerprint " + quoted(s["fingerprint"].get<std::string>()) + " for " + quoted(tensor) +
                    " but its fingerprint tensor holds " + hex64(e.fingerprint) + " (inconsistent sparse metadata)");
  }
}

// The "slices" summary: a JSON array with one object per stored slice, in
// any order. Checked against the entries read from the tensors.
void check_slices(const std::string &text, const s2ft_adapter &a, const std::string &path) {
  const nlohmann::ordered_json slices = io::parse_strict_json(
      text.data(), text.data() + text.size(), kMaxSlicesDepth,
      [&](const std::string &m) { bad(path, "metadata \"slices\": " + m); });
  if (!slices.is_array()) bad(path, "metadata \"slices\" must be a JSON array");
  std::set<std::string> seen;
  std::map<std::string, std::pair<int32_t, int32_t>> stored;  // stem -> (layer, target)
  for (int32_t l = 0; l < a.shape.n_layers; ++l)
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t)
      if (!a.layers[static_cast<size_t>(l)][static_cast<size_t>(t)].empty()) stored[target_tensor_stem(l, t)] = {l, t};
  const size_t entries = stored.size();
  if (slices.size() != entries)
    bad(path, "metadata \"slices\" lists " + std::to_string(slices.size()) + " slices but the file stores " +
                  std::to_string(entries));
  for (size_t i = 0; i < slices.size(); ++i) {
    const nlohmann::ordered_json &s = slices[i];
    const std::string at = "metadata \"slices\"[" + std::to_string(i) + "]";
    if (!s.is_object() || s.size() != 5) bad(path, at + " must be an object with tensor, target, axis, k, fingerprint");
    for (const char *key : {"tensor", "target", "axis", "fingerprint"})
      if (!s.contains(key) || !s[key].is_string()) bad(path, at + " has no string \"" + key + "\"");
    if (!s.contains("k") || !s["k"].is_number_integer()) bad(path, at + " has no integer \"k\"");
    const std::string tensor = s["tensor"].get<std::string>();
    auto it = stored.find(tensor);
    if (it == stored.end()) bad(path, at + " names " + quoted(tensor) + ", which is not a stored slice");
    const int32_t layer = it->second.first, target = it->second.second;
    if (!seen.insert(tensor).second) bad(path, at + " lists " + quoted(tensor) + " a second time");
    const AdapterEntry &e = a.layers[static_cast<size_t>(layer)][static_cast<size_t>(target)];
    if (s["target"].get<std::string>() != target_name(target))
      bad(path, at + " gives target " + quoted(s["target"].get<std::string>()) + " for " + quoted(tensor));
    if (s["axis"].get<std::string>() != axis_name(target))
      bad(path, at + " gives axis " + quoted(s["axis"].get<std::string>()) + " for " + quoted(tensor));
    if (s["k"].get<int64_t>() != static_cast<int64_t>(e.lines.size()))
      bad(path, at + " gives k = " + std::to_string(s["k"].get<int64_t>()) + " but the tensors hold " +
                    std::to_string(e.lines.size()) + " lines");
    const std::string want = hex64(slice_fingerprint(e.fingerprints));
    if (s["fingerprint"].get<std::string>() != want)
      bad(path, at + " gives fingerprint " + quoted(s["fingerprint"].get<std::string>()) + " for " + quoted(tensor) +
                    " but its base fingerprints hash to " + want + " (inconsistent slices metadata)");
  }
}

// The adapter's metadata: every "meta.<key>" entry, checked by the rules of
// s2ft_adapter_set_meta. Other keys the format does not know are ignored.
std::map<std::string, std::string> read_meta(const io::SafetensorsFile &f, const std::string &path) {
  std::map<std::string, std::string> out;
  const size_t plen = std::strlen(kMetaFilePrefix);
  for (const auto &kv : f.metadata()) {
    if (kv.first.compare(0, plen, kMetaFilePrefix) != 0) continue;
    const std::string key = kv.first.substr(plen);
    const std::string why = meta_key_problem(key);
    if (!why.empty()) bad(path, "metadata " + quoted(kv.first) + ": the key after \"" + kMetaFilePrefix + "\" " + why);
    const std::string bad_value = meta_value_problem(kv.second);
    if (!bad_value.empty()) bad(path, "metadata " + quoted(kv.first) + ": the value " + bad_value);
    if (out.size() >= kMaxMetaEntries)
      bad(path, "its __metadata__ holds more than " + std::to_string(kMaxMetaEntries) + " \"" + kMetaFilePrefix +
                    "\" keys, the most an adapter may have");
    out.emplace(key, kv.second);
  }
  return out;
}

// Checks that a safetensors container is an adapter file and reads it;
// `path` names the file (or the in-memory image) in messages.
std::unique_ptr<s2ft_adapter> load_adapter(const io::SafetensorsFile &f, const std::string &path) {
  if (meta(f, "format", path) != kFormat)
    bad(path, "metadata \"format\" is " + quoted(meta(f, "format", path)) + ", expected \"" + kFormat + "\"");
  const std::string &version = meta(f, "format_version", path);
  const bool with_low_rank = version == kVersionLowRank;
  const bool with_sparse = version == kVersionSparse || with_low_rank;
  if (version == "1")
    bad(path, "it is adapter format version 1, whose base fingerprints hashed the base's dtype and bytes; this "
              "library (format version " + std::string(kVersion) + ") hashes bf16-rounded values, so it cannot "
              "check them: make the adapter again from its base and tuned weights (s2ft diff, or "
              "s2ft_adapter_from_training)");
  if (version != kVersion && !with_sparse)
    bad(path, "metadata \"format_version\" is " + quoted(version) + "; this library reads versions " + kVersion +
                  ", " + kVersionSparse + " and " + kVersionLowRank);
  if (meta(f, "axes", path) != kAxes)
    bad(path, "metadata \"axes\" is " + quoted(meta(f, "axes", path)) + ", expected \"" + kAxes + "\"");

  s2ft_model_shape shape{};
  for (int i = 0; i < 6; ++i) *shape_field(shape, i) = parse_positive_i32(meta(f, kShapeKeys[i], path), kShapeKeys[i], path);
  try {
    check_model_shape(&shape, "shape");
  } catch (const Error &e) {
    bad(path, std::string("its model shape metadata is invalid: ") + e.what());
  }
  if (shape.n_layers > kMaxLayers)
    bad(path, "metadata \"n_layers\" = " + std::to_string(shape.n_layers) + " is above the limit of " +
                  std::to_string(kMaxLayers));

  auto a = std::make_unique<s2ft_adapter>();
  a->shape = shape;
  a->name = meta(f, "name", path);
  if (a->name.size() > kMaxNameBytes) bad(path, "metadata \"name\" is longer than " + std::to_string(kMaxNameBytes) + " bytes");
  if (a->name.find('\0') != std::string::npos) bad(path, "metadata \"name\" contains a NUL character");
  a->default_scale = parse_finite(meta(f, "default_scale", path), "default_scale", path);
  const uint32_t declared_targets = parse_targets(meta(f, "targets", path), path);
  const std::string &slices = meta(f, "slices", path);
  const std::string *sparse_summary = with_sparse ? &meta(f, "sparse", path) : nullptr;
  const std::string *low_rank_summary = with_low_rank ? &meta(f, "low_rank", path) : nullptr;
  a->meta = read_meta(f, path);
  a->layers.resize(static_cast<size_t>(shape.n_layers));
  a->sparse.resize(static_cast<size_t>(shape.n_layers));
  a->low_rank.resize(static_cast<size_t>(shape.n_layers));

  std::map<std::pair<int32_t, int32_t>, Found> found;
  std::map<std::pair<int32_t, int32_t>, FoundSparse> found_sparse;
  std::map<std::pair<int32_t, int32_t>, FoundLowRank> found_low_rank;
  for (const io::TensorInfo &t : f.tensors()) {
    int32_t layer = 0, target = 0;
    int kind = 0;
    if (!parse_tensor_name(t.name, shape, &layer, &target, &kind))
      bad(path, "tensor " + quoted(t.name) + " is not an adapter tensor (expected model.layers.<i < " +
                    std::to_string(shape.n_layers) + ">.<self_attn.o_proj|self_attn.v_proj|mlp.down_proj|mlp.up_proj>" +
                    "." + "<s2ft_lines|s2ft_delta|s2ft_base_fingerprint>" +
                    (with_sparse ? ", or model.layers.<i>.<any projection>.<s2ft_sparse_indices|s2ft_sparse_delta|"
                                   "s2ft_sparse_base_fingerprint>" : "") +
                    (with_low_rank ? ", or model.layers.<i>.<any projection>.<s2ft_low_rank_b|s2ft_low_rank_a|"
                                     "s2ft_low_rank_base_fingerprint>" : "") + ")");
    if (kind >= 3 && kind < 6 && !with_sparse)
      bad(path, "tensor " + quoted(t.name) + " holds sparse entries, which format version " + version +
                    " does not have (they need format version " + kVersionSparse + " or later)");
    if (kind >= 6 && !with_low_rank)
      bad(path, "tensor " + quoted(t.name) + " holds a low-rank entry, which format version " + version +
                    " does not have (it needs format version " + kVersionLowRank + ")");
    // Names are unique: the container checked.
    if (kind < 3) found[{layer, target}].part[kind] = &t;
    else if (kind < 6) found_sparse[{layer, target}].part[kind - 3] = &t;
    else found_low_rank[{layer, target}].part[kind - 6] = &t;
  }
  uint32_t targets = 0;
  for (const auto &kv : found) {
    const int32_t layer = kv.first.first, target = kv.first.second;
    a->layers[static_cast<size_t>(layer)][static_cast<size_t>(target)] = read_entry(f, kv.second, shape, layer, target, path);
    targets |= S2FT_TARGET_BIT(target);
  }
  for (const auto &kv : found_sparse) {
    const int32_t layer = kv.first.first, weight = kv.first.second;
    a->sparse[static_cast<size_t>(layer)][static_cast<size_t>(weight)] =
        read_sparse(f, kv.second, shape, layer, weight, path);
    check_no_overlap(*a, layer, weight, path);
  }
  for (const auto &kv : found_low_rank) {
    const int32_t layer = kv.first.first, weight = kv.first.second;
    a->low_rank[static_cast<size_t>(layer)][static_cast<size_t>(weight)] =
        read_low_rank(f, kv.second, shape, layer, weight, path);
    check_low_rank_alone(*a, layer, weight, path);
  }
  if (targets != declared_targets)
    bad(path, "metadata \"targets\" = " + quoted(meta(f, "targets", path)) + " but the file stores slices of \"" +
                  targets_text(targets) + "\"");
  check_slices(slices, *a, path);
  if (sparse_summary != nullptr) check_sparse_summary(*sparse_summary, *a, path);
  if (low_rank_summary != nullptr) check_low_rank_summary(*low_rank_summary, *a, path);
  return a;
}

}  // namespace

std::unique_ptr<s2ft_adapter> adapter_from_image(std::vector<uint8_t> bytes, const std::string &what) {
  return load_adapter(io::SafetensorsFile::parse(std::move(bytes), what), what);
}

}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_adapter_save(const s2ft_adapter *adapter, const char *path) {
  return s2ft::guard("s2ft_adapter_save", [&] {
    s2ft::require_live(adapter, "adapter");
    s2ft::require_not_null(path, "path");
    if (*path == '\0') s2ft::fail_arg("path is empty");
    const s2ft_adapter &a = *adapter;
    if (a.shape.n_layers > s2ft::kMaxLayers)
      s2ft::fail_arg("adapter has " + std::to_string(a.shape.n_layers) + " layers; adapter files hold at most " +
                     std::to_string(s2ft::kMaxLayers));
    s2ft::io::SafetensorsWriter w;
    const bool with_low_rank = a.has_low_rank();
    const bool with_sparse = a.has_sparse() || with_low_rank;
    w.set_metadata("format", s2ft::kFormat);
    w.set_metadata("format_version", with_low_rank ? s2ft::kVersionLowRank
                                     : with_sparse ? s2ft::kVersionSparse
                                                   : s2ft::kVersion);
    w.set_metadata("name", a.name);
    w.set_metadata("default_scale", s2ft::num(a.default_scale));
    w.set_metadata("axes", s2ft::kAxes);
    s2ft_model_shape shape = a.shape;
    for (int i = 0; i < 6; ++i) w.set_metadata(s2ft::kShapeKeys[i], std::to_string(*s2ft::shape_field(shape, i)));
    uint32_t targets = 0;
    nlohmann::json slices = nlohmann::json::array();
    for (int32_t l = 0; l < a.shape.n_layers; ++l)
      for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
        const s2ft::AdapterEntry &e = a.layers[static_cast<size_t>(l)][static_cast<size_t>(t)];
        if (e.empty()) continue;
        targets |= S2FT_TARGET_BIT(t);
        const std::string stem = s2ft::target_tensor_stem(l, t);
        const int64_t k = static_cast<int64_t>(e.lines.size());
        const int64_t len = s2ft::target_line_length(a.shape, t);
        const std::vector<int64_t> dshape =
            s2ft::target_axis(t) == S2FT_AXIS_COLUMNS ? std::vector<int64_t>{len, k} : std::vector<int64_t>{k, len};
        w.add(stem + s2ft::kLinesSuffix, "I64", {k}, e.lines.data(), e.lines.size() * sizeof(int64_t));
        w.add(stem + s2ft::kDeltaSuffix, "F32", dshape, e.delta.data(), e.delta.size() * sizeof(float));
        w.add(stem + s2ft::kFingerprintSuffix, "U64", {k}, e.fingerprints.data(), e.fingerprints.size() * sizeof(uint64_t));
        slices.push_back({{"tensor", stem},
                          {"target", s2ft::target_name(t)},
                          {"axis", s2ft::axis_name(t)},
                          {"k", k},
                          {"fingerprint", s2ft::hex64(s2ft::slice_fingerprint(e.fingerprints))}});
      }
    // Sparse entries (version 3 only), layer by layer, weights in id order.
    nlohmann::json sparse = nlohmann::json::array();
    for (int32_t l = 0; l < a.shape.n_layers && with_sparse; ++l)
      for (int32_t wt = 0; wt < S2FT_NUM_WEIGHTS; ++wt) {
        const s2ft::SparseEntry &e = a.sparse[static_cast<size_t>(l)][static_cast<size_t>(wt)];
        if (e.empty()) continue;
        const std::string stem = s2ft::weight_tensor_stem(l, wt);
        const int64_t count = static_cast<int64_t>(e.indices.size());
        w.add(stem + s2ft::kSparseIndicesSuffix, "I64", {count}, e.indices.data(), e.indices.size() * sizeof(int64_t));
        w.add(stem + s2ft::kSparseDeltaSuffix, "F32", {count}, e.delta.data(), e.delta.size() * sizeof(float));
        w.add(stem + s2ft::kSparseFingerprintSuffix, "U64", {1}, &e.fingerprint, sizeof(uint64_t));
        sparse.push_back({{"tensor", stem},
                          {"weight", s2ft::weight_name(wt)},
                          {"count", count},
                          {"fingerprint", s2ft::hex64(e.fingerprint)}});
      }
    // Low-rank entries (version 4 only), layer by layer, weights in id order.
    nlohmann::json low_rank = nlohmann::json::array();
    for (int32_t l = 0; l < a.shape.n_layers && with_low_rank; ++l)
      for (int32_t wt = 0; wt < S2FT_NUM_WEIGHTS; ++wt) {
        const s2ft::LowRankEntry &e = a.low_rank[static_cast<size_t>(l)][static_cast<size_t>(wt)];
        if (e.empty()) continue;
        const std::string stem = s2ft::weight_tensor_stem(l, wt);
        int64_t rows, cols;
        s2ft::weight_shape(a.shape, wt, &rows, &cols);
        w.add(stem + s2ft::kLowRankBSuffix, "F32", {rows, e.rank}, e.b.data(), e.b.size() * sizeof(float));
        w.add(stem + s2ft::kLowRankASuffix, "F32", {e.rank, cols}, e.a.data(), e.a.size() * sizeof(float));
        w.add(stem + s2ft::kLowRankFingerprintSuffix, "U64", {1}, &e.fingerprint, sizeof(uint64_t));
        low_rank.push_back({{"tensor", stem},
                            {"weight", s2ft::weight_name(wt)},
                            {"rank", e.rank},
                            {"fingerprint", s2ft::hex64(e.fingerprint)}});
      }
    w.set_metadata("targets", s2ft::targets_text(targets));
    w.set_metadata("slices", slices.dump());
    if (with_sparse) w.set_metadata("sparse", sparse.dump());
    if (with_low_rank) w.set_metadata("low_rank", low_rank.dump());
    for (const auto &kv : a.meta) w.set_metadata(s2ft::kMetaFilePrefix + kv.first, kv.second);
    w.write(path);
  });
}

S2FT_API s2ft_status s2ft_adapter_load(const char *path, s2ft_adapter **out) {
  return s2ft::guard("s2ft_adapter_load", [&] {
    s2ft::require_not_null(out, "out");
    *out = nullptr;
    s2ft::require_not_null(path, "path");
    if (*path == '\0') s2ft::fail_arg("path is empty");
    *out = s2ft::load_adapter(s2ft::io::SafetensorsFile::read(path), path).release();
  });
}

}  // extern "C"
