// Adapter transitions on the CPU (apply, remove, switch; the plan and its
// checks are in src/adapter/model.cpp). For every line j of the new entry,
// at position p in the weight:
//   W[p] = round(double(W0[p]) + scale * double(delta[j]))   rounded once
// and lines only the old adapter displaced get their saved bytes W0 back
// (memcpy; never recomputed as W - delta, which would not round-trip in
// bf16/f16). W0 are the base bytes, saved when a line is first displaced:
// this backend keeps them, per (layer, target), in the layout of the
// adapter's delta ([line_length, k] for column targets, [k, line_length]
// for row targets, so a row-major weight is read and written row by row).
// Everything that can fail (allocation, fingerprints) happens while
// planning; writing cannot fail, so a failed call changes nothing.
//
// Sparse entries (any weight) are kept the same way, element by element:
// per (layer, weight) the base bytes of the displaced elements, in the
// order of the applied adapter's entries. Their whole-weight base
// fingerprint and per-row maxima (the overflow bound) are computed the
// first time a transition needs them, from the weight with every displaced
// line and element replaced by its saved base bytes, and kept: the base
// never changes while the model lives. The writes go: sparse restores,
// lines (restores and merges), new sparse elements.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "adapter/adapter.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/parallel.hpp"
#include "backend/merge_range.hpp"
#include "common/error.hpp"
#include "common/fingerprint.hpp"

namespace s2ft {
namespace cpu {
namespace {

// A model's saved base bytes: per (layer, target) the record of the lines
// the applied adapter displaced, and the buffer of the record before last,
// reused by the next transition so that switching back and forth does not
// allocate and page-fault (not state: a failed call may leave it empty).
// What a weight's base looks like as a whole (sparse entries' checks).
struct WeightBase {
  bool known = false;
  uint64_t fingerprint = 0;     // the whole-weight fingerprint of the base (TargetWeight)
  std::vector<double> row_max;  // per stored row: max |W0| over its finite values
};

struct Records {
  std::vector<std::array<std::vector<char>, S2FT_NUM_TARGETS>> original, spare;  // n_layers
  // Sparse entries: the displaced elements' base bytes, and the buffer of
  // the record before last; per (layer, weight).
  std::vector<std::array<std::vector<char>, S2FT_NUM_WEIGHTS>> sparse_original, sparse_spare;
  std::vector<std::array<WeightBase, S2FT_NUM_WEIGHTS>> base;
  // Low-rank entries: the whole base weight W0, compact row-major as
  // stored, while the applied adapter has a low-rank entry on it.
  std::vector<std::array<std::vector<char>, S2FT_NUM_WEIGHTS>> low_rank_original;
  std::vector<std::array<std::vector<int64_t>, S2FT_NUM_WEIGHTS>> row_map, col_map;  // TargetWeight's
};

// ---- rounding once from double to the weight's dtype ------------------------

// Rounds d to f32 with round-to-odd: truncate, and set the last bit when
// anything was cut off. Rounding that to bf16/f16 (at least 2 fewer
// significant bits) to nearest-even then gives the correctly rounded result
// of d, which a plain double -> f32 -> bf16 chain does not on near-ties.
float to_f32_round_to_odd(double d) {
  float f = static_cast<float>(d);
  if (!std::isfinite(d) || static_cast<double>(f) == d) return f;
  if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u |= 1u;
  std::memcpy(&f, &u, 4);
  return f;
}

struct CodecF32 {
  using T = float;
  static double load(T v) { return v; }
  static T store(double d) { return static_cast<float>(d); }
};
struct CodecBF16 {
  using T = uint16_t;
  static double load(T v) { return bf16_to_f32(v); }
  static T store(double d) { return f32_to_bf16(to_f32_round_to_odd(d)); }
};
struct CodecF16 {
  using T = uint16_t;
  static double load(T v) { return f16_to_f32(v); }
  static T store(double d) { return f32_to_f16(to_f32_round_to_odd(d)); }
};

// ---- line geometry ----------------------------------------------------------

// Where element i of line j lives: in the weight (line at position p) and in
// the compact [len, k] (columns) or [k, len] (rows) buffers.
struct LineGeometry {
  char *base = nullptr;      // the weight's element (0, 0)
  int64_t step_elem = 0;     // bytes from one element of a line to the next
  int64_t step_line = 0;     // bytes from one line to the next
  bool columns = true;
  int64_t len = 0, k = 0;
  LineGeometry() = default;
  LineGeometry(const Matrix &w, bool by_columns, int64_t line_length, int64_t lines)
      : base(w.base), columns(by_columns), len(line_length), k(lines) {
    const int64_t e = static_cast<int64_t>(w.elem());
    step_elem = (by_columns ? w.rs : w.cs) * e;
    step_line = (by_columns ? w.cs : w.rs) * e;
  }
  char *weight_elem(int64_t i, int64_t p) const { return base + i * step_elem + p * step_line; }
  size_t compact(int64_t i, int64_t j) const { return static_cast<size_t>(columns ? i * k + j : j * len + i); }
};

// A span: n elements of the lines whose weight bytes sit at w + t * ws and
// whose compact index is c0 + t (t in [0, n)). Column targets give one span
// per weight row and run of lines that are consecutive both in the list and
// in the weight (a permuted model's whole trained block is one run); row
// targets give one span per line. Spans let the inner loops run over
// contiguous memory, which is what makes a switch memory-bound.
struct Span {
  char *w;
  int64_t ws;
  size_t c0;
  int64_t n;
  int64_t first_line;  // index into js of the span's first line (column targets: of its run)
};

// Runs of js where consecutive entries are consecutive lines at consecutive positions.
std::vector<std::pair<size_t, int64_t>> line_runs(const std::vector<int64_t> &js, const std::vector<int64_t> &pos) {
  std::vector<std::pair<size_t, int64_t>> runs;  // (start in js, length)
  for (size_t t = 0; t < js.size(); ++t) {
    if (!runs.empty()) {
      const size_t prev = t - 1;
      if (js[t] == js[prev] + 1 && pos[static_cast<size_t>(js[t])] == pos[static_cast<size_t>(js[prev])] + 1) {
        ++runs.back().second;
        continue;
      }
    }
    runs.push_back({t, 1});
  }
  return runs;
}

template <typename F>
void for_each_span(const LineGeometry &g, const std::vector<int64_t> &pos, const std::vector<int64_t> &js, F &&f) {
  if (g.columns) {
    const auto runs = line_runs(js, pos);
    for (int64_t i = 0; i < g.len; ++i)
      for (const auto &r : runs) {
        const int64_t j0 = js[r.first];
        f(Span{g.weight_elem(i, pos[static_cast<size_t>(j0)]), g.step_line, g.compact(i, j0), r.second,
               static_cast<int64_t>(r.first)});
      }
  } else {
    for (size_t t = 0; t < js.size(); ++t) {
      const int64_t j = js[t];
      f(Span{g.weight_elem(0, pos[static_cast<size_t>(j)]), g.step_elem, g.compact(0, j), g.len, static_cast<int64_t>(t)});
    }
  }
}

// Copies n elements of T; short runs (scattered lines) stay inline instead of
// paying a library memcpy call per element.
template <typename T>
inline void copy_elems(char *dst, const char *src, int64_t n) {
  if (n <= 8) {
    for (int64_t t = 0; t < n; ++t) std::memcpy(dst + t * sizeof(T), src + t * sizeof(T), sizeof(T));
  } else {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(T));
  }
}

// ---- writing lines ----------------------------------------------------------

// For the lines js: W[pos[j]] = original[j] when delta is NULL (restore), else
// round(original[j] + scale * delta[j]).
template <typename Codec>
void write_lines(const LineGeometry &g, const std::vector<int64_t> &pos, const std::vector<int64_t> &js,
                 const char *original, const float *delta, double scale) {
  using T = typename Codec::T;
  for_each_span(g, pos, js, [&](const Span &sp) {
    const T *o = reinterpret_cast<const T *>(original) + sp.c0;  // compact buffers are T-aligned
    const float *d = delta != nullptr ? delta + sp.c0 : nullptr;
    const bool dense = sp.ws == static_cast<int64_t>(sizeof(T)) && reinterpret_cast<uintptr_t>(sp.w) % alignof(T) == 0;
    if (dense && d == nullptr) {
      copy_elems<T>(sp.w, reinterpret_cast<const char *>(o), sp.n);
    } else if (dense) {
      T *w = reinterpret_cast<T *>(sp.w);
      for (int64_t t = 0; t < sp.n; ++t) w[t] = Codec::store(Codec::load(o[t]) + scale * static_cast<double>(d[t]));
    } else {
      for (int64_t t = 0; t < sp.n; ++t) {
        const T v = d == nullptr ? o[t] : Codec::store(Codec::load(o[t]) + scale * static_cast<double>(d[t]));
        std::memcpy(sp.w + t * sp.ws, &v, sizeof(T));
      }
    }
  });
}

// Copies the base bytes of the new lines into `out` (compact layout of g):
// from the old record (old_g, old_bytes) where from_old[j] >= 0 (the line is
// displaced now), else from the weight.
template <typename T>
void gather_originals(const LineGeometry &g, const std::vector<int64_t> &pos, const std::vector<int64_t> &js,
                      const std::vector<int64_t> &from_old, const LineGeometry &old_g, const char *old_bytes,
                      char *out) {
  bool any_old = false;
  for (int64_t j : js) any_old = any_old || from_old[static_cast<size_t>(j)] >= 0;
  if (!any_old) {  // the common case: every line comes straight from the weight
    for_each_span(g, pos, js, [&](const Span &sp) {
      char *dst = out + sp.c0 * sizeof(T);
      if (sp.ws == static_cast<int64_t>(sizeof(T))) {
        copy_elems<T>(dst, sp.w, sp.n);
      } else {
        for (int64_t t = 0; t < sp.n; ++t) std::memcpy(dst + t * sizeof(T), sp.w + t * sp.ws, sizeof(T));
      }
    });
    return;
  }
  for_each_span(g, pos, js, [&](const Span &sp) {
    const int64_t lines_in_span = g.columns ? sp.n : 1;
    for (int64_t u = 0; u < lines_in_span; ++u) {  // element-wise where a line comes from the old record
      const int64_t j = js[static_cast<size_t>(sp.first_line + u)];
      if (from_old[static_cast<size_t>(j)] < 0) continue;
      const int64_t o = from_old[static_cast<size_t>(j)];
      if (g.columns) {
        const int64_t i = static_cast<int64_t>(sp.c0) / g.k;
        std::memcpy(out + (sp.c0 + static_cast<size_t>(u)) * sizeof(T), old_bytes + old_g.compact(i, o) * sizeof(T), sizeof(T));
      } else {
        for (int64_t i = 0; i < g.len; ++i)
          std::memcpy(out + (sp.c0 + static_cast<size_t>(i)) * sizeof(T), old_bytes + old_g.compact(i, o) * sizeof(T), sizeof(T));
      }
    }
    for (int64_t t = 0; t < sp.n; ++t) {  // the rest straight from the weight
      const int64_t j = js[static_cast<size_t>(sp.first_line + (g.columns ? t : 0))];
      if (from_old[static_cast<size_t>(j)] >= 0) {
        if (!g.columns) break;
        continue;
      }
      if (sp.ws == static_cast<int64_t>(sizeof(T))) {  // contiguous: copy the rest of the span at once
        int64_t end = t;
        while (end < sp.n && from_old[static_cast<size_t>(js[static_cast<size_t>(sp.first_line + (g.columns ? end : 0))])] < 0) ++end;
        std::memcpy(out + (sp.c0 + static_cast<size_t>(t)) * sizeof(T), sp.w + t * sp.ws, static_cast<size_t>(end - t) * sizeof(T));
        t = end - 1;
        continue;
      }
      std::memcpy(out + (sp.c0 + static_cast<size_t>(t)) * sizeof(T), sp.w + t * sp.ws, sizeof(T));
    }
  });
}

void write_lines_any(int32_t dtype, const LineGeometry &g, const std::vector<int64_t> &pos, const std::vector<int64_t> &js,
                     const char *original, const float *delta, double scale) {
  switch (dtype) {
    case S2FT_F32: write_lines<CodecF32>(g, pos, js, original, delta, scale); break;
    case S2FT_BF16: write_lines<CodecBF16>(g, pos, js, original, delta, scale); break;
    default: write_lines<CodecF16>(g, pos, js, original, delta, scale); break;
  }
}

// ---- fingerprints ---------------------------------------------------------------

// The f32 bits of a stored element (16-bit types widen exactly).
inline uint32_t f32_bits_of(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}
inline uint32_t f32_bits_of(uint16_t bf16_or_f16, int32_t dtype) {
  return dtype == S2FT_BF16 ? static_cast<uint32_t>(bf16_or_f16) << 16 : f32_bits_of(f16_to_f32(bf16_or_f16));
}

// The fingerprints (common/fingerprint.hpp) of all k lines held in a
// compact buffer of T (layout of g), the values line_fingerprint() gives
// for those lines in the weight. The k hash chains are advanced together,
// element by element, so their multiplies overlap instead of running one
// long dependent chain per line.
template <typename T>
std::vector<uint64_t> fingerprint_lines_of(const LineGeometry &g, int32_t dtype, const T *compact) {
  std::vector<uint64_t> h(static_cast<size_t>(g.k), fingerprint::kOffset);
  for (int64_t i = 0; i < g.len; ++i)
    for (int64_t j = 0; j < g.k; ++j) {
      const T v = compact[g.compact(i, j)];
      uint32_t bits;
      if constexpr (sizeof(T) == 4) bits = f32_bits_of(v);
      else bits = f32_bits_of(v, dtype);
      h[static_cast<size_t>(j)] = fingerprint::mix(h[static_cast<size_t>(j)], fingerprint::word(bits));
    }
  for (uint64_t &v : h) v = fingerprint::finish(v);
  return h;
}

std::vector<uint64_t> fingerprint_lines(const LineGeometry &g, int32_t dtype, const char *compact) {
  if (dtype == S2FT_F32) return fingerprint_lines_of(g, dtype, reinterpret_cast<const float *>(compact));
  return fingerprint_lines_of(g, dtype, reinterpret_cast<const uint16_t *>(compact));
}

// What happens to one (layer, target): its record is replaced by `original`.
struct Step {
  const backend::TransitionStep *st = nullptr;
  int32_t dtype = S2FT_F32;  // the weight's
  LineGeometry geometry{};
  std::vector<char> original;    // base bytes of the new lines (compact layout of geometry)
  std::vector<int64_t> restore;  // indices into the old record of lines to put back
  std::vector<int64_t> all_new;  // 0..k-1 of the new entry
};

// max |W0| over the finite elements of every line held in a compact buffer.
template <typename Codec>
std::vector<double> max_abs_lines_of(const LineGeometry &g, const typename Codec::T *compact) {
  std::vector<double> m(static_cast<size_t>(g.k), 0.0);
  for (int64_t i = 0; i < g.len; ++i)
    for (int64_t j = 0; j < g.k; ++j) {
      const double v = Codec::load(compact[g.compact(i, j)]);
      if (std::isfinite(v)) m[static_cast<size_t>(j)] = std::max(m[static_cast<size_t>(j)], std::fabs(v));
    }
  return m;
}

std::vector<double> max_abs_lines(const LineGeometry &g, int32_t dtype, const char *compact) {
  if (dtype == S2FT_F32) return max_abs_lines_of<CodecF32>(g, reinterpret_cast<const float *>(compact));
  const uint16_t *halves = reinterpret_cast<const uint16_t *>(compact);
  return dtype == S2FT_BF16 ? max_abs_lines_of<CodecBF16>(g, halves) : max_abs_lines_of<CodecF16>(g, halves);
}

// Builds the step for a transition to st.entry (may be NULL): gathers the
// base bytes of its lines (from the old record where the line is displaced
// now), refuses a line whose merge at `scale` could overflow the dtype, and,
// unless `force`, compares the base fingerprints with the entry's. Returns
// false with *refusal filled (but for its step) at the first refusal.
bool plan_step(Records &rec, const backend::TransitionStep &st, const backend::SparseStep *sparse, double scale,
               bool force, Step *out, backend::Refusal *refusal) {
  Step &s = *out;
  s.st = &st;
  const size_t l = static_cast<size_t>(st.layer), t = static_cast<size_t>(st.target);
  const std::vector<char> &old_original = rec.original[l][t];
  const std::vector<int64_t> &old_positions = *st.old_positions;
  const std::vector<int64_t> &new_positions = *st.new_positions;
  const AdapterEntry *entry = st.entry;
  const Matrix &w = st.w;
  const int64_t len = st.line_length, n_lines = st.by_columns ? w.cols : w.rows;
  const int64_t k = entry != nullptr ? static_cast<int64_t>(new_positions.size()) : 0;
  s.geometry = LineGeometry(w, st.by_columns, len, k);
  s.dtype = w.dtype;
  const size_t e = w.elem();

  // Index of each position in the old record (-1: not displaced now).
  std::vector<int64_t> old_index;
  if (!old_positions.empty()) {
    old_index.assign(static_cast<size_t>(n_lines), -1);
    for (size_t j = 0; j < old_positions.size(); ++j) old_index[static_cast<size_t>(old_positions[j])] = static_cast<int64_t>(j);
  }
  const int64_t k_old = static_cast<int64_t>(old_positions.size());
  const LineGeometry old_geometry(w, st.by_columns, len, k_old);

  if (entry != nullptr) {
    // Base bytes of the new lines, in the compact layout.
    s.original.swap(rec.spare[l][t]);  // reuse the buffer of the record before last
    s.original.resize(static_cast<size_t>(k * len) * e);
    const LineGeometry &g = s.geometry;
    std::vector<int64_t> from_old(static_cast<size_t>(k), -1);  // index in the old record, or -1
    if (!old_index.empty())
      for (int64_t j = 0; j < k; ++j) from_old[static_cast<size_t>(j)] = old_index[static_cast<size_t>(new_positions[static_cast<size_t>(j)])];
    s.all_new.resize(static_cast<size_t>(k));
    for (int64_t j = 0; j < k; ++j) s.all_new[static_cast<size_t>(j)] = j;
    if (e == 4)
      gather_originals<uint32_t>(g, new_positions, s.all_new, from_old, old_geometry, old_original.data(), s.original.data());
    else
      gather_originals<uint16_t>(g, new_positions, s.all_new, from_old, old_geometry, old_original.data(), s.original.data());
    // Elements the old adapter's sparse entries displaced hold merged values
    // in the weight: their base bytes are in the sparse record.
    if (sparse != nullptr && !sparse->onto_lines.empty()) {
      const std::vector<char> &srec = rec.sparse_original[l][t];
      for (const auto &o : sparse->onto_lines)
        std::memcpy(s.original.data() + g.compact(o[2], o[1]) * e, srec.data() + static_cast<size_t>(o[0]) * e, e);
    }

    const std::vector<double> max_w0 = backend::scaled_delta_is_large(s.dtype, scale, st.max_abs_delta)
                                           ? max_abs_lines(g, s.dtype, s.original.data())
                                           : std::vector<double>();
    for (int64_t j = 0; j < k && !max_w0.empty(); ++j) {
      const double max_delta = backend::max_abs_delta(entry->delta, st.by_columns, len, k, j);
      if (backend::merge_may_overflow(s.dtype, max_w0[static_cast<size_t>(j)], scale, max_delta)) {
        refusal->kind = backend::Refusal::kOverflow;
        refusal->line = j;
        refusal->max_abs_w0 = max_w0[static_cast<size_t>(j)];
        refusal->max_abs_delta = max_delta;
        return false;
      }
    }
    if (!force) {
      const std::vector<uint64_t> got = fingerprint_lines(g, s.dtype, s.original.data());
      for (int64_t j = 0; j < k; ++j) {
        const uint64_t want = entry->fingerprints[static_cast<size_t>(j)];
        if (want != 0 && got[static_cast<size_t>(j)] != want) {
          refusal->kind = backend::Refusal::kFingerprint;
          refusal->line = j;
          return false;
        }
      }
    }
  }

  // Old lines the new adapter does not cover go back to their base bytes.
  if (!old_positions.empty()) {
    std::vector<char> in_new(static_cast<size_t>(n_lines), 0);
    for (int64_t p : new_positions) in_new[static_cast<size_t>(p)] = 1;
    for (int64_t j = 0; j < k_old; ++j)
      if (!in_new[static_cast<size_t>(old_positions[static_cast<size_t>(j)])]) s.restore.push_back(j);
  }
  return true;
}

// ---- sparse entries ----------------------------------------------------------------

// The value of one stored element of `dtype` (16-bit types widen exactly).
inline float load_elem(int32_t dtype, const char *p) {
  if (dtype == S2FT_F32) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return dtype == S2FT_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

// Computes b (fingerprint, row maxima) for the weight of sparse step st
// from its present bytes with every displaced line (the structured step
// steps[st.lines_step], if any) and element (the old sparse record) put
// back to its saved base bytes. Rows are hashed in base order (row_map,
// col_map), by the instance's threads.
void compute_base(Instance &inst, const Records &rec, const std::vector<backend::TransitionStep> &steps,
                  const backend::SparseStep &st, WeightBase &b) {
  const Matrix &w = st.w;
  const size_t l = static_cast<size_t>(st.layer), wt = static_cast<size_t>(st.weight);
  const std::vector<int64_t> &row_map = rec.row_map[l][wt], &col_map = rec.col_map[l][wt];
  const int32_t dtype = w.dtype;
  const size_t e = w.elem();
  const int64_t rows = w.rows, cols = w.cols;
  // The old lines of the weight and where their elements sit in the record.
  const backend::TransitionStep *ls = st.lines_step >= 0 ? &steps[static_cast<size_t>(st.lines_step)] : nullptr;
  const std::vector<int64_t> no_lines;
  const std::vector<int64_t> &old_lines = ls != nullptr ? *ls->old_positions : no_lines;
  const char *line_rec = st.weight < S2FT_NUM_TARGETS ? rec.original[l][wt].data() : nullptr;
  const bool columns = ls != nullptr && ls->by_columns;
  const int64_t k_old = static_cast<int64_t>(old_lines.size()), len = ls != nullptr ? ls->line_length : 0;
  std::vector<int64_t> row_line;  // rows case: stored row -> index in the record, or -1
  if (ls != nullptr && !columns && k_old > 0) {
    row_line.assign(static_cast<size_t>(rows), -1);
    for (int64_t j = 0; j < k_old; ++j) row_line[static_cast<size_t>(old_lines[static_cast<size_t>(j)])] = j;
  }
  // The old sparse elements, by position (so grouped by stored row).
  const std::vector<char> &srec = rec.sparse_original[l][wt];
  std::vector<std::pair<int64_t, int64_t>> old_elems;  // (position, index in the record)
  for (size_t o = 0; o < st.old_positions->size(); ++o) old_elems.emplace_back((*st.old_positions)[o], static_cast<int64_t>(o));
  std::sort(old_elems.begin(), old_elems.end());

  std::vector<uint64_t> row_fp(static_cast<size_t>(rows));
  b.row_max.assign(static_cast<size_t>(rows), 0.0);
  const int n_threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(inst.threads, rows / 64 + 1)));
  run_parallel(n_threads, [&](int part) {
    const int64_t r0 = rows * part / n_threads, r1 = rows * (part + 1) / n_threads;
    std::vector<float> v(static_cast<size_t>(cols));
    auto it = std::lower_bound(old_elems.begin(), old_elems.end(), std::make_pair(r0 * cols, int64_t{-1}));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t rl = row_line.empty() ? -1 : row_line[static_cast<size_t>(r)];
      for (int64_t c = 0; c < cols; ++c)
        v[static_cast<size_t>(c)] = rl >= 0 ? load_elem(dtype, line_rec + static_cast<size_t>(rl * len + c) * e)
                                            : load_elem(dtype, w.at(r, c));
      if (columns)
        for (int64_t j = 0; j < k_old; ++j)
          v[static_cast<size_t>(old_lines[static_cast<size_t>(j)])] =
              load_elem(dtype, line_rec + static_cast<size_t>(r * k_old + j) * e);
      for (; it != old_elems.end() && it->first < (r + 1) * cols; ++it)
        v[static_cast<size_t>(it->first % cols)] = load_elem(dtype, srec.data() + static_cast<size_t>(it->second) * e);
      uint64_t h = fingerprint::kOffset;
      double m = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        const float x = v[static_cast<size_t>(col_map.empty() ? c : col_map[static_cast<size_t>(c)])];
        h = fingerprint::mix(h, fingerprint::word(f32_bits_of(x)));
        if (std::isfinite(x)) m = std::max(m, std::fabs(static_cast<double>(x)));
      }
      row_fp[static_cast<size_t>(r)] = fingerprint::finish(h);
      b.row_max[static_cast<size_t>(r)] = m;
    }
  });
  uint64_t h = fingerprint::kOffset;
  for (int64_t r = 0; r < rows; ++r)
    h = fingerprint::mix_u64(h, row_fp[static_cast<size_t>(row_map.empty() ? r : row_map[static_cast<size_t>(r)])]);
  b.fingerprint = fingerprint::finish(h);
  b.known = true;
}

// What happens to one (layer, weight)'s sparse entries: its record is
// replaced by `original` (the base bytes of the new elements).
struct SparsePlan {
  const backend::SparseStep *st = nullptr;
  std::vector<char> original;
};

// Gathers the new elements' base bytes and makes the checks; false with
// *refusal filled (but for its step) at the first refusal.
bool plan_sparse(Instance &inst, Records &rec, const std::vector<backend::TransitionStep> &steps,
                 const backend::SparseStep &st, double scale, SparsePlan *out, backend::Refusal *refusal) {
  out->st = &st;
  if (st.entry == nullptr) return true;
  const size_t l = static_cast<size_t>(st.layer), wt = static_cast<size_t>(st.weight);
  const Matrix &w = st.w;
  const size_t e = w.elem();
  const std::vector<int64_t> &pos = *st.new_positions;
  const size_t n = pos.size();
  out->original.swap(rec.sparse_spare[l][wt]);
  out->original.resize(n * e);
  const std::vector<char> &srec = rec.sparse_original[l][wt];
  const backend::TransitionStep *ls = st.lines_step >= 0 ? &steps[static_cast<size_t>(st.lines_step)] : nullptr;
  for (size_t j = 0; j < n; ++j) {
    const int64_t p = pos[j];
    const char *src;
    if (st.from_old[j] >= 0) {
      src = srec.data() + static_cast<size_t>(st.from_old[j]) * e;
    } else if (st.from_line[j] >= 0 && ls != nullptr) {
      const int64_t k_old = static_cast<int64_t>(ls->old_positions->size()), jo = st.from_line[j];
      const int64_t i = ls->by_columns ? p / w.cols : p % w.cols;  // element along the line
      const size_t c = static_cast<size_t>(ls->by_columns ? i * k_old + jo : jo * ls->line_length + i);
      src = rec.original[l][wt].data() + c * e;
    } else {
      src = w.at(p / w.cols, p % w.cols);
    }
    std::memcpy(out->original.data() + j * e, src, e);
  }
  WeightBase &b = rec.base[l][wt];
  if (backend::scaled_delta_is_large(w.dtype, scale, st.max_abs_delta)) {
    if (!b.known) compute_base(inst, rec, steps, st, b);
    for (size_t j = 0; j < n; ++j) {
      const double row_max = b.row_max[static_cast<size_t>(pos[j] / w.cols)];
      const double d = std::fabs(static_cast<double>(st.entry->delta[j]));
      if (backend::merge_may_overflow(w.dtype, row_max, scale, d)) {
        refusal->kind = backend::Refusal::kOverflow;
        refusal->line = static_cast<int64_t>(j);
        refusal->max_abs_w0 = row_max;
        refusal->max_abs_delta = d;
        return false;
      }
    }
  }
  if (st.check_fingerprint) {
    if (!b.known) compute_base(inst, rec, steps, st, b);
    if (b.fingerprint != st.entry->fingerprint) {
      refusal->kind = backend::Refusal::kFingerprint;
      refusal->line = -1;
      return false;
    }
  }
  return true;
}

// W[pos[j]] = round(double(W0[j]) + scale * double(delta[j])) for the new elements.
template <typename Codec>
void write_sparse_of(const backend::SparseStep &st, const char *original, double scale) {
  using T = typename Codec::T;
  const Matrix &w = st.w;
  const std::vector<int64_t> &pos = *st.new_positions;
  const float *d = st.entry->delta.data();
  for (size_t j = 0; j < pos.size(); ++j) {
    T o;
    std::memcpy(&o, original + j * sizeof(T), sizeof(T));
    const T v = Codec::store(Codec::load(o) + scale * static_cast<double>(d[j]));
    std::memcpy(w.at(pos[j] / w.cols, pos[j] % w.cols), &v, sizeof(T));
  }
}

void write_sparse(const backend::SparseStep &st, const char *original, double scale) {
  switch (st.w.dtype) {
    case S2FT_F32: write_sparse_of<CodecF32>(st, original, scale); break;
    case S2FT_BF16: write_sparse_of<CodecBF16>(st, original, scale); break;
    default: write_sparse_of<CodecF16>(st, original, scale); break;
  }
}

// ---- low-rank entries ----------------------------------------------------------

// Copies a weight's bytes as stored into a compact row-major buffer (sized
// by the caller), and back.
void copy_weight_out(const Matrix &w, char *dst) {
  const size_t e = w.elem();
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t c = 0; c < w.cols; ++c) std::memcpy(dst + static_cast<size_t>(r * w.cols + c) * e, w.at(r, c), e);
}
void copy_weight_in(const Matrix &w, const char *src) {
  const size_t e = w.elem();
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t c = 0; c < w.cols; ++c) std::memcpy(w.at(r, c), src + static_cast<size_t>(r * w.cols + c) * e, e);
}

// Row r of the entry's delta in double: out[c] = sum_k b[r, k] a[k, c]
// (base order), the sum of products of f32 values that double holds
// exactly, so only the additions round.
void low_rank_row(const LowRankEntry &e, int64_t r, int64_t cols, double *out) {
  std::fill(out, out + cols, 0.0);
  for (int64_t k = 0; k < e.rank; ++k) {
    const double bk = e.b[static_cast<size_t>(r * e.rank + k)];
    const float *ak = e.a.data() + static_cast<size_t>(k * cols);
    for (int64_t c = 0; c < cols; ++c) out[c] += bk * static_cast<double>(ak[c]);
  }
}

// W[r, c] = round(double(W0[r, c]) + scale * delta[r, c]) for every base
// row r and column c, W0 from `base` (compact, as stored), positions
// through the model's row and column maps; rows split over the threads.
template <typename Codec>
void write_low_rank_of(Instance &inst, const Matrix &w, const char *base, const LowRankEntry &e, double scale,
                       const std::vector<int64_t> &row_map, const std::vector<int64_t> &col_map) {
  using T = typename Codec::T;
  const int64_t rows = w.rows, cols = w.cols;
  const int n_threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(inst.threads, rows / 16 + 1)));
  run_parallel(n_threads, [&](int part) {
    std::vector<double> d(static_cast<size_t>(cols));
    for (int64_t r = rows * part / n_threads; r < rows * (part + 1) / n_threads; ++r) {
      low_rank_row(e, r, cols, d.data());
      const int64_t sr = row_map.empty() ? r : row_map[static_cast<size_t>(r)];
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t sc = col_map.empty() ? c : col_map[static_cast<size_t>(c)];
        T o;
        std::memcpy(&o, base + static_cast<size_t>(sr * cols + sc) * sizeof(T), sizeof(T));
        const T v = Codec::store(Codec::load(o) + scale * d[static_cast<size_t>(c)]);
        std::memcpy(w.at(sr, sc), &v, sizeof(T));
      }
    }
  });
}

void write_low_rank(Instance &inst, const Records &rec, const backend::LowRankStep &st, const char *base,
                    const LowRankEntry &e, double scale) {
  const size_t l = static_cast<size_t>(st.layer), wt = static_cast<size_t>(st.weight);
  const std::vector<int64_t> &rm = rec.row_map[l][wt], &cm = rec.col_map[l][wt];
  switch (st.w.dtype) {
    case S2FT_F32: write_low_rank_of<CodecF32>(inst, st.w, base, e, scale, rm, cm); break;
    case S2FT_BF16: write_low_rank_of<CodecBF16>(inst, st.w, base, e, scale, rm, cm); break;
    default: write_low_rank_of<CodecF16>(inst, st.w, base, e, scale, rm, cm); break;
  }
}

// A new low-rank entry's plan: the buffer its W0 goes into when the old
// adapter had no entry there (allocated now, so that writing cannot fail).
struct LowRankPlan {
  const backend::LowRankStep *st = nullptr;
  std::vector<char> saved;
};

// Makes the checks of a new low-rank entry (base fingerprint, overflow);
// false with *refusal filled (but for its step) at the first refusal.
bool plan_low_rank(Instance &inst, Records &rec, const std::vector<backend::TransitionStep> &steps,
                   const std::vector<backend::SparseStep> &sparse, const backend::LowRankStep &st, double scale,
                   LowRankPlan *out, backend::Refusal *refusal) {
  out->st = &st;
  const LowRankEntry &e = *st.entry;
  const size_t l = static_cast<size_t>(st.layer), wt = static_cast<size_t>(st.weight);
  const Matrix &w = st.w;
  WeightBase &b = rec.base[l][wt];
  if (st.old_entry == nullptr) {
    out->saved.resize(static_cast<size_t>(w.rows * w.cols) * w.elem());
    // The weight's base is what it holds with the old adapter's lines and
    // elements put back (its low-rank base, when it had one, is known:
    // it was computed here when that entry was first applied).
    if (!b.known) {
      const std::vector<int64_t> none;
      backend::SparseStep as_sparse;
      if (st.sparse_step >= 0) {
        as_sparse = sparse[static_cast<size_t>(st.sparse_step)];
      } else {
        as_sparse.layer = st.layer;
        as_sparse.weight = st.weight;
        as_sparse.w = w;
        as_sparse.old_positions = &none;
        as_sparse.lines_step = st.lines_step;
      }
      compute_base(inst, rec, steps, as_sparse, b);
    }
  }
  if (!b.known) fail(S2FT_ERR_INTERNAL, "a low-rank entry's base weight was not measured when it was first applied");
  if (st.check_fingerprint && b.fingerprint != e.fingerprint) {
    refusal->kind = backend::Refusal::kFingerprint;
    refusal->line = -1;
    return false;
  }
  const std::vector<int64_t> &row_map = rec.row_map[l][wt];
  double max_w0 = 0.0, max_delta = 0.0;
  const int64_t row = backend::low_rank_overflow_row(
      e.b.data(), e.a.data(), w.rows, w.cols, e.rank, w.dtype, scale,
      [&](int64_t r) { return b.row_max[static_cast<size_t>(row_map.empty() ? r : row_map[static_cast<size_t>(r)])]; },
      &max_w0, &max_delta);
  if (row >= 0) {
    refusal->kind = backend::Refusal::kOverflow;
    refusal->line = row;
    refusal->max_abs_w0 = max_w0;
    refusal->max_abs_delta = max_delta;
    return false;
  }
  return true;
}

}  // namespace

void model_create(backend::Instance *, const s2ft_model_shape &shape, const std::vector<backend::TargetWeight> &weights,
                  backend::Object *out) {
  auto r = std::make_shared<Records>();
  const size_t n = static_cast<size_t>(shape.n_layers);
  r->original.resize(n);
  r->spare.resize(n);
  r->sparse_original.resize(n);
  r->sparse_spare.resize(n);
  r->base.resize(n);
  r->low_rank_original.resize(n);
  r->row_map.resize(n);
  r->col_map.resize(n);
  for (const backend::TargetWeight &w : weights) {
    r->row_map[static_cast<size_t>(w.layer)][static_cast<size_t>(w.target)] = w.row_map;
    r->col_map[static_cast<size_t>(w.layer)][static_cast<size_t>(w.target)] = w.col_map;
  }
  *out = std::move(r);
}

namespace {

// Everything a transition will write, planned and checked before the
// first write.
struct TransitionPlan {
  std::vector<Step> lines;
  std::vector<SparsePlan> sparse;
  std::vector<LowRankPlan> low_rank;
};

// Plans and checks every step; false with *refusal filled at the first
// refusal (nothing written).
bool plan_transition(Instance &inst, Records &rec, const std::vector<backend::TransitionStep> &steps,
                     const std::vector<backend::SparseStep> &sparse, const std::vector<backend::LowRankStep> &low_rank,
                     double scale, bool force, TransitionPlan *plan, backend::Refusal *refusal) {
  // The sparse step that shares each line step's weight, if any.
  std::vector<const backend::SparseStep *> sparse_of(steps.size(), nullptr);
  for (const backend::SparseStep &sp : sparse)
    if (sp.lines_step >= 0 && static_cast<size_t>(sp.lines_step) < steps.size())
      sparse_of[static_cast<size_t>(sp.lines_step)] = &sp;
  plan->lines.resize(steps.size());
  for (size_t i = 0; i < steps.size(); ++i)
    if (!plan_step(rec, steps[i], sparse_of[i], scale, force, &plan->lines[i], refusal)) {
      refusal->step = static_cast<int64_t>(i);
      return false;
    }
  plan->sparse.resize(sparse.size());
  for (size_t i = 0; i < sparse.size(); ++i)
    if (!plan_sparse(inst, rec, steps, sparse[i], scale, &plan->sparse[i], refusal)) {
      refusal->step = static_cast<int64_t>(i);
      refusal->sparse = true;
      return false;
    }
  for (size_t i = 0; i < low_rank.size(); ++i) {
    if (low_rank[i].entry == nullptr) continue;
    plan->low_rank.emplace_back();
    if (!plan_low_rank(inst, rec, steps, sparse, low_rank[i], scale, &plan->low_rank.back(), refusal)) {
      refusal->step = static_cast<int64_t>(i);
      refusal->low_rank = true;
      return false;
    }
  }
  return true;
}

}  // namespace

void model_transition(backend::Instance *inst, void *model, const std::vector<backend::TransitionStep> &steps,
                      const std::vector<backend::SparseStep> &sparse, const std::vector<backend::LowRankStep> &low_rank,
                      const s2ft_adapter *, double scale, bool force, backend::Refusal *refusal) {
  Records &rec = *static_cast<Records *>(model);
  Instance &in = instance(inst);
  const auto saved_base = [&](const backend::LowRankStep &st) -> std::vector<char> & {
    return rec.low_rank_original[static_cast<size_t>(st.layer)][static_cast<size_t>(st.weight)];
  };
  // A weight whose old low-rank entry leaves gets its base back first, so
  // that the new adapter's lines and elements there are planned on base
  // values. On a refusal it is merged again: the same computation on the
  // same values gives the same bytes, so the model is as it was.
  const auto leaves = [](const backend::LowRankStep &st) { return st.old_entry != nullptr && st.entry == nullptr; };
  for (const backend::LowRankStep &st : low_rank)
    if (leaves(st)) copy_weight_in(st.w, saved_base(st).data());
  const auto undo_restores = [&] {
    for (const backend::LowRankStep &st : low_rank)
      if (leaves(st)) write_low_rank(in, rec, st, saved_base(st).data(), *st.old_entry, st.old_scale);
  };
  TransitionPlan plan;
  bool planned = false;
  try {
    planned = plan_transition(in, rec, steps, sparse, low_rank, scale, force, &plan, refusal);
  } catch (...) {
    undo_restores();
    throw;
  }
  if (!planned) return undo_restores();

  // Writes: sparse restores first (so that lines see base values where
  // they are not saved), then the lines, then the new sparse elements,
  // then the low-rank entries (whose weights are then base wherever the
  // old adapter had lines or elements on them).
  for (SparsePlan &sp : plan.sparse) {
    const backend::SparseStep &st = *sp.st;
    const std::vector<char> &old = rec.sparse_original[static_cast<size_t>(st.layer)][static_cast<size_t>(st.weight)];
    const size_t e = st.w.elem();
    for (int64_t o : st.restore) {
      const int64_t p = (*st.old_positions)[static_cast<size_t>(o)];
      std::memcpy(st.w.at(p / st.w.cols, p % st.w.cols), old.data() + static_cast<size_t>(o) * e, e);
    }
  }
  for (Step &s : plan.lines) {
    const backend::TransitionStep &st = *s.st;
    std::vector<char> &old = rec.original[static_cast<size_t>(st.layer)][static_cast<size_t>(st.target)];
    if (!s.restore.empty()) {
      LineGeometry g = s.geometry;
      g.k = static_cast<int64_t>(st.old_positions->size());
      write_lines_any(s.dtype, g, *st.old_positions, s.restore, old.data(), nullptr, 0.0);
    }
    if (st.entry != nullptr)
      write_lines_any(s.dtype, s.geometry, *st.new_positions, s.all_new, s.original.data(), st.entry->delta.data(),
                      scale);
    rec.spare[static_cast<size_t>(st.layer)][static_cast<size_t>(st.target)] = std::move(old);
    old = std::move(s.original);
  }
  for (SparsePlan &sp : plan.sparse) {
    const backend::SparseStep &st = *sp.st;
    if (st.entry != nullptr) write_sparse(st, sp.original.data(), scale);
    const size_t l = static_cast<size_t>(st.layer), w = static_cast<size_t>(st.weight);
    rec.sparse_spare[l][w] = std::move(rec.sparse_original[l][w]);
    rec.sparse_original[l][w] = std::move(sp.original);
  }
  for (LowRankPlan &lp : plan.low_rank) {
    const backend::LowRankStep &st = *lp.st;
    std::vector<char> &base = saved_base(st);
    if (st.old_entry == nullptr) {
      copy_weight_out(st.w, lp.saved.data());
      base.swap(lp.saved);
    }
    write_low_rank(in, rec, st, base.data(), *st.entry, scale);
  }
  for (const backend::LowRankStep &st : low_rank)
    if (leaves(st)) std::vector<char>().swap(saved_base(st));
}

}  // namespace cpu
}  // namespace s2ft
