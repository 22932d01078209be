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
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "adapter/adapter.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/merge_range.hpp"
#include "common/fingerprint.hpp"

namespace s2ft {
namespace cpu {
namespace {

// A model's saved base bytes: per (layer, target) the record of the lines
// the applied adapter displaced, and the buffer of the record before last,
// reused by the next transition so that switching back and forth does not
// allocate and page-fault (not state: a failed call may leave it empty).
struct Records {
  std::vector<std::array<std::vector<char>, S2FT_NUM_TARGETS>> original, spare;  // n_layers
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
bool plan_step(Records &rec, const backend::TransitionStep &st, double scale, bool force, Step *out,
               backend::Refusal *refusal) {
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

}  // namespace

void model_create(backend::Instance *, const s2ft_model_shape &shape, const std::vector<backend::TargetWeight> &,
                  backend::Object *out) {
  auto r = std::make_shared<Records>();
  r->original.resize(static_cast<size_t>(shape.n_layers));
  r->spare.resize(static_cast<size_t>(shape.n_layers));
  *out = std::move(r);
}

void model_transition(backend::Instance *, void *model, const std::vector<backend::TransitionStep> &steps,
                      const s2ft_adapter *, double scale, bool force, backend::Refusal *refusal) {
  Records &rec = *static_cast<Records *>(model);
  std::vector<Step> plans(steps.size());
  for (size_t i = 0; i < steps.size(); ++i)
    if (!plan_step(rec, steps[i], scale, force, &plans[i], refusal)) {
      refusal->step = static_cast<int64_t>(i);
      return;
    }
  for (Step &s : plans) {
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
}

}  // namespace cpu
}  // namespace s2ft
