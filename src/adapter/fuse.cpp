// Fusing adapters: per (layer, target) the union of the inputs' lines, with
//   delta[line] = sum_i w_i * delta_i[line]   (lines an input lacks add 0)
// summed in double and rounded once to f32, so applying the result equals
// applying the inputs one after another up to that one rounding. Each line
// keeps the base fingerprint the inputs agree on: a zero fingerprint
// (unknown) defers to a nonzero one; two different nonzero ones mean the
// inputs were made against different bases, which is an error.
//
// Sparse entries fuse the same way per (layer, weight): the union of the
// inputs' indices, sum_i w_i * delta_i in double, one whole-weight
// fingerprint the inputs agree on. Where the result has a structured line
// (weights O, V, DOWN, UP) and a sparse entry lies on it (one input trained
// the line, another the entry), the entry is folded into the line's delta:
// its double sum is added to the line's before the one rounding, so the
// result keeps the adapter invariant (no sparse entry on a line).
//
// Low-rank entries fuse by concatenating factors: b = [w_1 b_1 | w_2 b_2 |
// ...] (each product rounded once to f32) and a = [a_1 ; a_2 ; ...], so b a
// = sum_i w_i b_i a_i. Where the result has structured lines on a weight
// that some input covers by a low-rank entry, the lines join the factors
// exactly as one-hot products (as a PEFT export writes them) and the
// result keeps no structured entry there; sparse entries on such a weight
// have no exact factored form of small rank, so that fuse is refused.
//
// The result's metadata keeps each input's provenance: "input.<i>.name",
// "input.<i>.weight" and "input.<i>.<key>" for each of its keys, within a
// budget that leaves room for the caller's own keys (fused_meta).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "adapter/adapter.hpp"
#include "common/error.hpp"
#include "select/selection.hpp"

namespace s2ft {
namespace {

constexpr size_t kMaxNameBytes = 255;

std::string hex64(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// The inputs' names joined with '+'. Names are limited to 255 bytes, so a
// longer join is cut at the last whole UTF-8 character that fits.
std::string joined_name(const s2ft_adapter *const *adapters, int64_t n) {
  std::string name;
  for (int64_t i = 0; i < n; ++i) {
    if (i > 0) name += '+';
    name += adapters[i]->name;
  }
  if (name.size() > kMaxNameBytes) {
    size_t cut = kMaxNameBytes;
    while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xc0) == 0x80) --cut;
    name.resize(cut);
  }
  return name;
}

// The metadata keys fusion may fill; the other kMaxMetaEntries -
// kFusedMetaBudget stay free for the caller (a tool's version and time).
constexpr size_t kFusedMetaBudget = kMaxMetaEntries - 16;
const char *const kOmittedKey = "input.omitted";

// The fused adapter's metadata: every input's name and weight, then every
// input's keys in input order, each under "input.<i>.". Fusion must not fail
// for metadata's sake, so a key that would be longer than kMaxMetaKeyBytes
// (deep nesting of fused inputs) and everything past the budget is left
// out, and kOmittedKey then counts them (it takes one entry of the budget).
// The inputs' values are valid, and the names (255 bytes of UTF-8) and the
// weights are valid values, so nothing else can be wrong. Only the kept
// values are copied, however many inputs and keys there are.
std::map<std::string, std::string> fused_meta(const s2ft_adapter *const *adapters, const std::vector<double> &w,
                                              int64_t n) {
  std::vector<std::string> weights(static_cast<size_t>(n));
  std::vector<std::pair<std::string, const std::string *>> kept;
  size_t omitted = 0;
  const auto offer = [&](const std::string &prefix, const std::string &key, const std::string *value) {
    if (prefix.size() + key.size() > kMaxMetaKeyBytes || kept.size() == kFusedMetaBudget) {
      ++omitted;
      return;
    }
    kept.emplace_back(prefix + key, value);
  };
  for (int64_t i = 0; i < n; ++i) {
    const std::string prefix = "input." + std::to_string(i) + ".";
    char weight[40];
    std::snprintf(weight, sizeof weight, "%.17g", w[static_cast<size_t>(i)]);
    weights[static_cast<size_t>(i)] = weight;
    offer(prefix, "name", &adapters[i]->name);
    offer(prefix, "weight", &weights[static_cast<size_t>(i)]);
  }
  for (int64_t i = 0; i < n; ++i) {
    const std::string prefix = "input." + std::to_string(i) + ".";
    for (const auto &kv : adapters[i]->meta) offer(prefix, kv.first, &kv.second);
  }
  // The count needs an entry of its own.
  if (omitted > 0 && kept.size() == kFusedMetaBudget) {
    kept.pop_back();
    ++omitted;
  }
  std::map<std::string, std::string> out;
  for (const auto &kv : kept) out.emplace(kv.first, *kv.second);
  if (omitted > 0) out[kOmittedKey] = std::to_string(omitted);
  return out;
}

// One (layer, target) of the result before rounding: its lines and
// fingerprints (out.delta still empty) and the double sums, laid out as the
// delta ([len, k] for columns, [k, len] for rows).
struct FusedLines {
  AdapterEntry out;
  std::vector<double> sum;
};

// One (layer, weight)'s sparse entries before rounding.
struct FusedSparse {
  std::vector<int64_t> indices;
  std::vector<double> sum;
  uint64_t fingerprint = 0;
};

// Fuses one (layer, target) of all inputs.
FusedLines fuse_entry(const s2ft_adapter *const *adapters, const std::vector<double> &w, int64_t n, int32_t layer,
                      int32_t target) {
  const s2ft_model_shape &s = adapters[0]->shape;
  const int64_t len = target_line_length(s, target);
  const int32_t axis = target_axis(target);
  const auto entry = [&](int64_t i) -> const AdapterEntry & {
    return adapters[i]->layers[static_cast<size_t>(layer)][static_cast<size_t>(target)];
  };

  // The union of the inputs' lines, ascending. Sized by the lines the inputs
  // hold, never by the model shape (a claim of a loaded file, which may be
  // huge and backed by nothing).
  FusedLines fused;
  AdapterEntry &out = fused.out;
  for (int64_t i = 0; i < n; ++i) out.lines.insert(out.lines.end(), entry(i).lines.begin(), entry(i).lines.end());
  if (out.lines.empty()) return fused;
  std::sort(out.lines.begin(), out.lines.end());
  out.lines.erase(std::unique(out.lines.begin(), out.lines.end()), out.lines.end());
  // The line's position in the result.
  const auto slot = [&out](int64_t line) {
    return static_cast<int64_t>(std::lower_bound(out.lines.begin(), out.lines.end(), line) - out.lines.begin());
  };
  const int64_t k = static_cast<int64_t>(out.lines.size());
  out.fingerprints.assign(static_cast<size_t>(k), 0);
  std::vector<double> &sum = fused.sum;
  sum.assign(static_cast<size_t>(k * len), 0.0);

  for (int64_t i = 0; i < n; ++i) {
    const AdapterEntry &e = entry(i);
    const int64_t ki = static_cast<int64_t>(e.lines.size());
    for (int64_t p = 0; p < ki; ++p) {
      const int64_t line = e.lines[static_cast<size_t>(p)], q = slot(line);
      const uint64_t fp = e.fingerprints[static_cast<size_t>(p)];
      uint64_t &have = out.fingerprints[static_cast<size_t>(q)];
      if (fp != 0 && have != 0 && fp != have)
        fail_arg("adapters[" + std::to_string(i) + "] was made against a different base than an earlier adapter: layer " +
                 std::to_string(layer) + " target " + target_name(target) + " line " + std::to_string(line) +
                 " has base fingerprint " + hex64(fp) + ", not " + hex64(have));
      if (fp != 0) have = fp;
      for (int64_t x = 0; x < len; ++x) {
        const size_t src = static_cast<size_t>(axis == S2FT_AXIS_COLUMNS ? x * ki + p : p * len + x);
        const size_t dst = static_cast<size_t>(axis == S2FT_AXIS_COLUMNS ? x * k + q : q * len + x);
        sum[dst] += w[static_cast<size_t>(i)] * static_cast<double>(e.delta[src]);
      }
    }
  }
  return fused;
}

// Fuses the sparse entries of one (layer, weight) of all inputs.
FusedSparse fuse_sparse(const s2ft_adapter *const *adapters, const std::vector<double> &w, int64_t n, int32_t layer,
                        int32_t weight) {
  const auto entry = [&](int64_t i) -> const SparseEntry & {
    return adapters[i]->sparse[static_cast<size_t>(layer)][static_cast<size_t>(weight)];
  };
  FusedSparse out;
  for (int64_t i = 0; i < n; ++i) {
    const SparseEntry &e = entry(i);
    if (e.empty()) continue;
    if (e.fingerprint != 0 && out.fingerprint != 0 && e.fingerprint != out.fingerprint)
      fail_arg("adapters[" + std::to_string(i) + "] was made against a different base than an earlier adapter: the "
               "sparse entries of layer " + std::to_string(layer) + " weight " + weight_name(weight) +
               " have base fingerprint " + hex64(e.fingerprint) + ", not " + hex64(out.fingerprint));
    if (e.fingerprint != 0) out.fingerprint = e.fingerprint;
    out.indices.insert(out.indices.end(), e.indices.begin(), e.indices.end());
  }
  if (out.indices.empty()) return out;
  std::sort(out.indices.begin(), out.indices.end());
  out.indices.erase(std::unique(out.indices.begin(), out.indices.end()), out.indices.end());
  out.sum.assign(out.indices.size(), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const SparseEntry &e = entry(i);
    // Both ascending: one merge walk finds every index's slot.
    size_t q = 0;
    for (size_t p = 0; p < e.indices.size(); ++p) {
      while (out.indices[q] < e.indices[p]) ++q;
      out.sum[q] += w[static_cast<size_t>(i)] * static_cast<double>(e.delta[p]);
    }
  }
  return out;
}

// Rounds a double sum to f32, refusing one that overflows.
float fused_f32(double v, int32_t layer, const char *what, const char *name) {
  const float f = static_cast<float>(v);
  if (!std::isfinite(f)) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    fail_arg("the fused delta of layer " + std::to_string(layer) + " " + what + " " + name + " overflows f32 (" + buf +
             "); use smaller weights");
  }
  return f;
}

// Fuses everything of one layer into `lines` and `sparse` of the result.
void fuse_layer(const s2ft_adapter *const *adapters, const std::vector<double> &w, int64_t n, int32_t layer,
                std::array<AdapterEntry, S2FT_NUM_TARGETS> &lines, std::array<SparseEntry, S2FT_NUM_WEIGHTS> &sparse) {
  const s2ft_model_shape &s = adapters[0]->shape;
  for (int32_t wt = 0; wt < S2FT_NUM_WEIGHTS; ++wt) {
    FusedSparse fs = fuse_sparse(adapters, w, n, layer, wt);
    if (wt >= S2FT_NUM_TARGETS) {
      SparseEntry &e = sparse[static_cast<size_t>(wt)];
      e.indices = std::move(fs.indices);
      e.fingerprint = e.indices.empty() ? 0 : fs.fingerprint;
      e.delta.resize(fs.sum.size());
      for (size_t j = 0; j < fs.sum.size(); ++j) e.delta[j] = fused_f32(fs.sum[j], layer, "weight", weight_name(wt));
      continue;
    }
    const int32_t t = wt;
    FusedLines fl = fuse_entry(adapters, w, n, layer, t);
    AdapterEntry &out = fl.out;
    const int64_t k = static_cast<int64_t>(out.lines.size()), len = target_line_length(s, t);
    int64_t rows, cols;
    weight_shape(s, t, &rows, &cols);
    // Fold the sparse entries that lie on a fused line into it.
    SparseEntry &e = sparse[static_cast<size_t>(t)];
    for (size_t j = 0; j < fs.indices.size(); ++j) {
      const int64_t idx = fs.indices[j], line = element_line(t, cols, idx);
      const auto it = std::lower_bound(out.lines.begin(), out.lines.end(), line);
      if (it != out.lines.end() && *it == line) {
        const int64_t q = static_cast<int64_t>(it - out.lines.begin());
        const int64_t i = target_axis(t) == S2FT_AXIS_COLUMNS ? idx / cols : idx % cols;  // element along the line
        fl.sum[static_cast<size_t>(target_axis(t) == S2FT_AXIS_COLUMNS ? i * k + q : q * len + i)] += fs.sum[j];
        continue;
      }
      e.indices.push_back(idx);
      e.delta.push_back(fused_f32(fs.sum[j], layer, "weight", weight_name(t)));
    }
    e.fingerprint = e.indices.empty() ? 0 : fs.fingerprint;
    out.delta.resize(fl.sum.size());
    for (size_t j = 0; j < fl.sum.size(); ++j) out.delta[j] = fused_f32(fl.sum[j], layer, "target", target_name(t));
    lines[static_cast<size_t>(t)] = std::move(out);
  }
}

// Fuses the low-rank entries of one layer into `low_rank`, folding the
// result's lines on the same weights into them (see the top of this file).
void fuse_low_rank_layer(const s2ft_adapter *const *adapters, const std::vector<double> &w, int64_t n, int32_t layer,
                         std::array<AdapterEntry, S2FT_NUM_TARGETS> &lines,
                         const std::array<SparseEntry, S2FT_NUM_WEIGHTS> &sparse,
                         std::array<LowRankEntry, S2FT_NUM_WEIGHTS> &low_rank) {
  const s2ft_model_shape &s = adapters[0]->shape;
  for (int32_t wt = 0; wt < S2FT_NUM_WEIGHTS; ++wt) {
    const auto entry = [&](int64_t i) -> const LowRankEntry & {
      return adapters[i]->low_rank[static_cast<size_t>(layer)][static_cast<size_t>(wt)];
    };
    LowRankEntry out;
    for (int64_t i = 0; i < n; ++i) {
      const LowRankEntry &e = entry(i);
      if (e.empty()) continue;
      if (e.fingerprint != 0 && out.fingerprint != 0 && e.fingerprint != out.fingerprint)
        fail_arg("adapters[" + std::to_string(i) + "] was made against a different base than an earlier adapter: the "
                 "low-rank entry of layer " + std::to_string(layer) + " weight " + weight_name(wt) +
                 " has base fingerprint " + hex64(e.fingerprint) + ", not " + hex64(out.fingerprint));
      if (e.fingerprint != 0) out.fingerprint = e.fingerprint;
      out.rank += e.rank;
    }
    if (out.rank == 0) continue;
    if (!sparse[static_cast<size_t>(wt)].empty())
      fail(S2FT_ERR_UNSUPPORTED, "cannot fuse a low-rank entry with sparse entries on layer " + std::to_string(layer) +
                                     " weight " + weight_name(wt) +
                                     ": an unstructured delta has no exact factored form of small rank");
    AdapterEntry folded;
    if (wt < S2FT_NUM_TARGETS) {
      folded = std::move(lines[static_cast<size_t>(wt)]);
      lines[static_cast<size_t>(wt)] = AdapterEntry{};
    }
    const int64_t k_lines = static_cast<int64_t>(folded.lines.size());
    int64_t rows, cols;
    weight_shape(s, wt, &rows, &cols);
    const int64_t k = out.rank + k_lines;
    out.rank = k;
    out.b.assign(static_cast<size_t>(rows * k), 0.0f);
    out.a.assign(static_cast<size_t>(k * cols), 0.0f);
    int64_t off = 0;
    for (int64_t i = 0; i < n; ++i) {
      const LowRankEntry &e = entry(i);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < e.rank; ++j)
          out.b[static_cast<size_t>(r * k + off + j)] =
              fused_f32(w[static_cast<size_t>(i)] * static_cast<double>(e.b[static_cast<size_t>(r * e.rank + j)]), layer,
                        "weight", weight_name(wt));
      std::copy(e.a.begin(), e.a.end(), out.a.begin() + static_cast<std::ptrdiff_t>(off * cols));
      off += e.rank;
    }
    // Line j at base line p: a column target's delta column times the
    // one-hot row e_p^T; a row target's one-hot column e_p times its delta row.
    const bool columns = wt < S2FT_NUM_TARGETS && target_axis(wt) == S2FT_AXIS_COLUMNS;
    for (int64_t j = 0; j < k_lines; ++j) {
      const int64_t p = folded.lines[static_cast<size_t>(j)], q = off + j;
      if (columns) {
        for (int64_t r = 0; r < rows; ++r)
          out.b[static_cast<size_t>(r * k + q)] = folded.delta[static_cast<size_t>(r * k_lines + j)];
        out.a[static_cast<size_t>(q * cols + p)] = 1.0f;
      } else {
        out.b[static_cast<size_t>(p * k + q)] = 1.0f;
        std::copy(folded.delta.begin() + static_cast<std::ptrdiff_t>(j * cols),
                  folded.delta.begin() + static_cast<std::ptrdiff_t>((j + 1) * cols),
                  out.a.begin() + static_cast<std::ptrdiff_t>(q * cols));
      }
    }
    low_rank[static_cast<size_t>(wt)] = std::move(out);
  }
}

}  // namespace
}  // namespace s2ft

extern "C" S2FT_API s2ft_status s2ft_adapter_fuse(const s2ft_adapter *const *adapters, const double *weights, int64_t n,
                                                  s2ft_adapter **out) {
  return s2ft::guard("s2ft_adapter_fuse", [&] {
    s2ft::require_not_null(out, "out");
    *out = nullptr;
    s2ft::require_not_null(adapters, "adapters");
    if (n < 1) s2ft::fail_arg("n " + std::to_string(n) + " must be at least 1");
    std::vector<double> w;
    for (int64_t i = 0; i < n; ++i) {
      const std::string ai = "adapters[" + std::to_string(i) + "]";
      s2ft::require_live(adapters[i], ai.c_str());
      if (!s2ft::same_shape(adapters[i]->shape, adapters[0]->shape))
        s2ft::fail_arg(ai + " has model shape " + s2ft::shape_string(adapters[i]->shape) + " but adapters[0] has " +
                       s2ft::shape_string(adapters[0]->shape));
      const double wi = weights != nullptr ? weights[i] : adapters[i]->default_scale;
      if (!std::isfinite(wi)) s2ft::fail_arg("weights[" + std::to_string(i) + "] " + std::to_string(wi) + " is not finite");
      w.push_back(wi);
    }
    auto fused = std::make_unique<s2ft_adapter>();
    fused->shape = adapters[0]->shape;
    fused->name = s2ft::joined_name(adapters, n);
    fused->default_scale = 1.0;
    fused->meta = s2ft::fused_meta(adapters, w, n);
    fused->layers.resize(static_cast<size_t>(fused->shape.n_layers));
    fused->sparse.resize(static_cast<size_t>(fused->shape.n_layers));
    fused->low_rank.resize(static_cast<size_t>(fused->shape.n_layers));
    for (int32_t l = 0; l < fused->shape.n_layers; ++l)
    {
      s2ft::fuse_layer(adapters, w, n, l, fused->layers[static_cast<size_t>(l)], fused->sparse[static_cast<size_t>(l)]);
      s2ft::fuse_low_rank_layer(adapters, w, n, l, fused->layers[static_cast<size_t>(l)],
                                fused->sparse[static_cast<size_t>(l)], fused->low_rank[static_cast<size_t>(l)]);
    }
    *out = fused.release();
  });
}
