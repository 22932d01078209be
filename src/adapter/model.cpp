// s2ft_model and applying, removing and switching adapters in place.
//
// For every line j of an adapter entry, at position p in the weight:
//   apply:   W[p] = round(double(W0[p]) + scale * double(delta[j]))
//   remove:  W[p] = W0[p]                        (saved bytes, memcpy)
// where W0 are the base bytes, saved when the line was first displaced and
// never recomputed as W - delta (which would not round-trip in bf16/f16).
// Apply, remove and switch are all one transition from the applied adapter A
// (maybe none) to a new adapter B (maybe none): lines only in A get their
// saved bytes back, lines in B get W0 + scale_B * delta_B with W0 taken from
// the saved bytes where A displaced the line. So switch is bit-identical to
// remove-then-apply and touches only the union of the two line sets.
//
// Every check (arguments, shapes, missing weights, fingerprints) and every
// allocation happens while building the plan; only then are weights written,
// and writing cannot fail, so a failed call leaves the model unchanged.
//
// On a CUDA context the plan (checks, positions) is made here the same way
// and the writes are one device pass per group of weights
// (kernels/cuda_model.cu), queued on the context's stream. Fingerprints are
// checked against the base fingerprints taken at create, so apply, switch
// and remove never wait for the device (except to upload an adapter the
// first time or to grow a record buffer, see cuda_model.hpp).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "adapter/model.hpp"
#include "common/error.hpp"
#include "context.hpp"
#include "cuda_model.hpp"
#include "model_shape.hpp"

namespace s2ft {
namespace {

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

// The fingerprints of all k lines held in a compact buffer (layout of g), the
// same values line_fingerprint() gives for those lines in the weight: FNV-1a
// over the dtype id, then each element's bytes in line order. The k hash
// chains are advanced together, element by element, so their multiplies
// overlap instead of running one long dependent chain per line.
std::vector<uint64_t> fingerprint_lines(const LineGeometry &g, int32_t dtype, const char *compact) {
  const uint64_t prime = 0x100000001b3ull;
  const size_t e = dtype_size(dtype);
  std::vector<uint64_t> h(static_cast<size_t>(g.k), (0xcbf29ce484222325ull ^ static_cast<uint8_t>(dtype)) * prime);
  for (int64_t i = 0; i < g.len; ++i)
    for (int64_t j = 0; j < g.k; ++j) {
      const unsigned char *p = reinterpret_cast<const unsigned char *>(compact) + g.compact(i, j) * e;
      uint64_t v = h[static_cast<size_t>(j)];
      for (size_t b = 0; b < e; ++b) v = (v ^ p[b]) * prime;
      h[static_cast<size_t>(j)] = v;
    }
  for (uint64_t &v : h)
    if (v == 0) v = 1;  // 0 means "unknown"
  return h;
}

// ---- the plan -------------------------------------------------------------------

std::string where(int32_t layer, int32_t target) {
  return "layer " + std::to_string(layer) + " target " + target_name(target);
}

const char *weight_field(int32_t target) {
  switch (target) {
    case S2FT_TARGET_O: return "o";
    case S2FT_TARGET_V: return "v";
    case S2FT_TARGET_DOWN: return "down";
    default: return "up";
  }
}

std::string shape_string(const s2ft_model_shape &s) {
  char b[160];
  std::snprintf(b, sizeof b, "{n_layers %d, d_model %d, n_heads %d, n_kv_heads %d, head_dim %d, d_ff %d}",
                s.n_layers, s.d_model, s.n_heads, s.n_kv_heads, s.head_dim, s.d_ff);
  return b;
}

bool same_shape(const s2ft_model_shape &a, const s2ft_model_shape &b) {
  return a.n_layers == b.n_layers && a.d_model == b.d_model && a.n_heads == b.n_heads &&
         a.n_kv_heads == b.n_kv_heads && a.head_dim == b.head_dim && a.d_ff == b.d_ff;
}

// What happens to one (layer, target): the old record is replaced by `next`.
struct Step {
  int32_t layer = 0, target = 0;
  int32_t dtype = S2FT_F32;  // the weight's
  LineGeometry geometry{};
  const AdapterEntry *entry = nullptr;  // the new adapter's entry, or NULL
  Displaced next;                        // positions and base bytes of the new lines
  std::vector<int64_t> restore;          // indices into the old record of lines to put back
  std::vector<int64_t> all_new;          // 0..k-1 of the new entry
};

// Checks the new adapter's `entry` of (layer, target) against the model
// (the weight is present, the entry is consistent, its lines are in range)
// and returns where each of its lines sits in the weight.
std::vector<int64_t> entry_positions(const s2ft_model &m, int32_t layer, int32_t target, const AdapterEntry &entry) {
  const ModelWeight &mw = m.weights[static_cast<size_t>(layer)][static_cast<size_t>(target)];
  if (!mw.present)
    fail_arg("the adapter changes " + where(layer, target) + " but the model was created without that weight (" +
             "layers[" + std::to_string(layer) + "]." + weight_field(target) + " was NULL)");
  const int64_t len = target_line_length(m.shape, target), n_lines = target_line_count(m.shape, target);
  const int64_t k = static_cast<int64_t>(entry.lines.size());
  if (entry.fingerprints.size() != entry.lines.size() || entry.delta.size() != static_cast<size_t>(k * len))
    fail_arg("the adapter's entry for " + where(layer, target) + " is inconsistent (lines, fingerprints and delta sizes differ)");
  std::vector<int64_t> positions(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) {
    const int64_t line = entry.lines[static_cast<size_t>(j)];
    if (line < 0 || line >= n_lines)
      fail_arg("the adapter's " + where(layer, target) + " line " + std::to_string(line) + " is out of range [0, " +
               std::to_string(n_lines) + ")");
    positions[static_cast<size_t>(j)] = m.perm ? permuted_line(*m.perm, layer, target, line) : line;
  }
  return positions;
}

[[noreturn]] void fingerprint_mismatch(int32_t layer, int32_t target, int64_t line) {
  fail(S2FT_ERR_FORMAT, "base fingerprint mismatch at " + where(layer, target) + " line " + std::to_string(line) +
                            ": the adapter was made for a different base model (or dtype); pass "
                            "S2FT_APPLY_FORCE to apply it anyway");
}

// Builds the step of (layer, target) for a transition to `entry` (may be
// NULL): checks the entry against the weight, gathers the base bytes of its
// lines (from the old record where the line is displaced now), and, unless
// `force`, compares their fingerprints with the adapter's.
Step plan_step(const s2ft_model &m, int32_t layer, int32_t target, const AdapterEntry *entry, bool force,
               std::vector<char> &spare) {
  const ModelWeight &mw = m.weights[static_cast<size_t>(layer)][static_cast<size_t>(target)];
  const Displaced &old = m.displaced[static_cast<size_t>(layer)][static_cast<size_t>(target)];
  Step s;
  s.layer = layer;
  s.target = target;
  s.entry = entry;
  if (entry != nullptr) s.next.positions = entry_positions(m, layer, target, *entry);
  const int32_t axis = target_axis(target);
  const int64_t len = target_line_length(m.shape, target), n_lines = target_line_count(m.shape, target);
  const int64_t k = entry != nullptr ? static_cast<int64_t>(entry->lines.size()) : 0;
  s.geometry = LineGeometry(mw.view, axis == S2FT_AXIS_COLUMNS, len, k);
  s.dtype = mw.view.dtype;
  const size_t e = mw.view.elem();

  // Index of each position in the old record (-1: not displaced now).
  std::vector<int64_t> old_index;
  if (!old.empty()) {
    old_index.assign(static_cast<size_t>(n_lines), -1);
    for (size_t j = 0; j < old.positions.size(); ++j) old_index[static_cast<size_t>(old.positions[j])] = static_cast<int64_t>(j);
  }
  const int64_t k_old = static_cast<int64_t>(old.positions.size());
  const LineGeometry old_geometry(mw.view, axis == S2FT_AXIS_COLUMNS, len, k_old);

  if (entry != nullptr) {
    // Base bytes of the new lines, in the compact layout.
    s.next.original.swap(spare);  // reuse the buffer of the record before last
    s.next.original.resize(static_cast<size_t>(k * len) * e);
    const LineGeometry &g = s.geometry;
    std::vector<int64_t> from_old(static_cast<size_t>(k), -1);  // index in the old record, or -1
    if (!old_index.empty())
      for (int64_t j = 0; j < k; ++j) from_old[static_cast<size_t>(j)] = old_index[static_cast<size_t>(s.next.positions[static_cast<size_t>(j)])];
    s.all_new.resize(static_cast<size_t>(k));
    for (int64_t j = 0; j < k; ++j) s.all_new[static_cast<size_t>(j)] = j;
    if (e == 4)
      gather_originals<uint32_t>(g, s.next.positions, s.all_new, from_old, old_geometry, old.original.data(), s.next.original.data());
    else
      gather_originals<uint16_t>(g, s.next.positions, s.all_new, from_old, old_geometry, old.original.data(), s.next.original.data());

    if (!force) {
      const std::vector<uint64_t> got = fingerprint_lines(g, s.dtype, s.next.original.data());
      for (int64_t j = 0; j < k; ++j) {
        const uint64_t want = entry->fingerprints[static_cast<size_t>(j)];
        if (want != 0 && got[static_cast<size_t>(j)] != want)
          fingerprint_mismatch(layer, target, entry->lines[static_cast<size_t>(j)]);
      }
    }
  }

  // Old lines the new adapter does not cover go back to their base bytes.
  if (!old.empty()) {
    std::vector<char> in_new(static_cast<size_t>(n_lines), 0);
    for (int64_t p : s.next.positions) in_new[static_cast<size_t>(p)] = 1;
    for (int64_t j = 0; j < k_old; ++j)
      if (!in_new[static_cast<size_t>(old.positions[static_cast<size_t>(j)])]) s.restore.push_back(j);
  }
  return s;
}

// Resolves the scale argument: NaN means the adapter's default.
double resolve_scale(double scale, const s2ft_adapter &a) {
  if (std::isnan(scale)) return a.default_scale;
  if (!std::isfinite(scale)) fail_arg("scale is infinite");
  return scale;
}

void check_flags(uint32_t flags) {
  if (flags & ~S2FT_APPLY_FORCE) {
    char b[16];
    std::snprintf(b, sizeof b, "%x", flags & ~S2FT_APPLY_FORCE);
    fail_arg(std::string("flags has unknown bits 0x") + b);
  }
}

// Moves the model from its applied adapter (if any) to `adapter` (NULL:
// none) at `scale`. All checks first; then the writes, which cannot fail.
// Calls f(layer, target, entry) for every (layer, target) a transition to
// `adapter` touches: where the new adapter has an entry (entry non-NULL) or
// the applied one displaced lines (entry NULL when the new one has none).
template <typename F>
void for_each_changed(const s2ft_model &m, const s2ft_adapter *adapter, F &&f) {
  for (int32_t l = 0; l < m.shape.n_layers; ++l)
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      const AdapterEntry *e = nullptr;
      if (adapter != nullptr) {
        const AdapterEntry &ae = adapter->layers[static_cast<size_t>(l)][static_cast<size_t>(t)];
        if (!ae.empty()) e = &ae;
      }
      if (e == nullptr && m.displaced[static_cast<size_t>(l)][static_cast<size_t>(t)].empty()) continue;
      f(l, t, e);
    }
}

#ifdef S2FT_WITH_CUDA
// The CUDA transition: the same checks in the same order as plan_step (with
// the fingerprints taken at create), then one device pass
// (cuda::model_transition), which either queues every write or fails
// before any.
void transition_cuda(s2ft_model &m, const s2ft_adapter *adapter, double scale, bool force) {
  struct Planned {
    int32_t layer, target;
    std::vector<int64_t> positions;
  };
  std::vector<Planned> planned;
  for_each_changed(m, adapter, [&](int32_t l, int32_t t, const AdapterEntry *e) {
    Planned p{l, t, {}};
    if (e != nullptr) {
      p.positions = entry_positions(m, l, t, *e);
      if (!force) {
        const std::vector<uint64_t> &got = m.base_fingerprints[static_cast<size_t>(l)][static_cast<size_t>(t)];
        for (size_t j = 0; j < p.positions.size(); ++j) {
          const uint64_t want = e->fingerprints[j];
          if (want != 0 && got.at(static_cast<size_t>(p.positions[j])) != want) fingerprint_mismatch(l, t, e->lines[j]);
        }
      }
    }
    planned.push_back(std::move(p));
  });

  std::vector<cuda::TransitionStep> steps;
  steps.reserve(planned.size());
  for (const Planned &p : planned) {
    const ModelWeight &mw = m.weights[static_cast<size_t>(p.layer)][static_cast<size_t>(p.target)];
    cuda::TransitionStep st;
    st.layer = p.layer;
    st.target = p.target;
    st.w = mw.view;  // present: a new entry was checked, an old record implies one was
    st.by_columns = target_axis(p.target) == S2FT_AXIS_COLUMNS;
    st.line_length = target_line_length(m.shape, p.target);
    st.old_positions = &m.displaced[static_cast<size_t>(p.layer)][static_cast<size_t>(p.target)].positions;
    st.new_positions = &p.positions;
    steps.push_back(st);
  }
  cuda::model_transition(*m.ctx->cuda, *m.device, steps, adapter, scale);

  for (Planned &p : planned) {
    Displaced &d = m.displaced[static_cast<size_t>(p.layer)][static_cast<size_t>(p.target)];
    d.positions = std::move(p.positions);
    d.original.clear();
  }
  m.applied = adapter;
  m.scale = adapter != nullptr ? scale : 0.0;
}
#endif

void transition(s2ft_model &m, const s2ft_adapter *adapter, double scale, bool force) {
  if (adapter != nullptr && !same_shape(adapter->shape, m.shape))
    fail_arg("adapter's model shape " + shape_string(adapter->shape) + " differs from the model's " +
             shape_string(m.shape));
#ifdef S2FT_WITH_CUDA
  if (m.ctx->on_cuda()) {
    transition_cuda(m, adapter, scale, force);
    return;
  }
#endif
  std::vector<Step> steps;
  for_each_changed(m, adapter, [&](int32_t l, int32_t t, const AdapterEntry *e) {
    steps.push_back(plan_step(m, l, t, e, force, m.spare[static_cast<size_t>(l)][static_cast<size_t>(t)]));
  });

  for (Step &s : steps) {
    Displaced &old = m.displaced[static_cast<size_t>(s.layer)][static_cast<size_t>(s.target)];
    if (!s.restore.empty()) {
      LineGeometry g = s.geometry;
      g.k = static_cast<int64_t>(old.positions.size());
      write_lines_any(s.dtype, g, old.positions, s.restore, old.original.data(), nullptr, 0.0);
    }
    if (s.entry != nullptr)
      write_lines_any(s.dtype, s.geometry, s.next.positions, s.all_new, s.next.original.data(), s.entry->delta.data(), scale);
    m.spare[static_cast<size_t>(s.layer)][static_cast<size_t>(s.target)] = std::move(old.original);
    old = std::move(s.next);
  }
  m.applied = adapter;
  m.scale = adapter != nullptr ? scale : 0.0;
}

s2ft_model &require_model(s2ft_model *m) {
  require_not_null(m, "model");
  return *m;
}

}  // namespace
}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_model_create(s2ft_context *ctx, const s2ft_model_shape *shape,
                                       const s2ft_layer_weights *layers, const s2ft_selection *perm,
                                       s2ft_model **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_model_create", [&] {
    using namespace s2ft;
    require_not_null(out, "out");
    s2ft_context &c = require_context(ctx);
    check_model_shape(shape, "shape");
    require_not_null(layers, "layers");
    if (perm != nullptr && !same_shape(perm->shape, *shape))
      fail_arg("perm was made for model shape " + shape_string(perm->shape) + ", not " + shape_string(*shape));

    auto m = std::make_unique<s2ft_model>();
    m->ctx = ctx;
    m->shape = *shape;
    m->weights.resize(static_cast<size_t>(shape->n_layers));
    m->displaced.resize(static_cast<size_t>(shape->n_layers));
    m->spare.resize(static_cast<size_t>(shape->n_layers));
    std::vector<std::pair<Matrix, std::string>> all;
    for (int32_t l = 0; l < shape->n_layers; ++l)
      for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
        const s2ft_tensor *tensor = target_weight(layers[l], t);
        if (tensor == nullptr) continue;
        const std::string name = "layers[" + std::to_string(l) + "]." + weight_field(t);
        ModelWeight &w = m->weights[static_cast<size_t>(l)][static_cast<size_t>(t)];
        w.view = check_matrix(tensor, name.c_str(), c.device);
        int64_t rows, cols;
        target_weight_shape(*shape, t, &rows, &cols);
        require_shape(w.view, name.c_str(), rows, cols);
        w.tensor = *tensor;
        w.present = true;
        all.emplace_back(w.view, name);
      }
    // Applying writes each weight; two weights sharing memory would corrupt each other.
    for (size_t i = 0; i < all.size(); ++i)
      for (size_t j = i + 1; j < all.size(); ++j)
        require_disjoint(all[i].first, all[i].second.c_str(), all[j].first, all[j].second.c_str());
    if (perm != nullptr) m->perm = std::make_unique<s2ft_selection>(*perm);
#ifdef S2FT_WITH_CUDA
    if (c.on_cuda()) {
      // Fingerprint every line of every present weight now (one download:
      // synchronises), so apply and switch can check without the device.
      m->base_fingerprints.resize(static_cast<size_t>(shape->n_layers));
      std::vector<cuda::FingerprintJob> jobs;
      for (int32_t l = 0; l < shape->n_layers; ++l)
        for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
          const ModelWeight &w = m->weights[static_cast<size_t>(l)][static_cast<size_t>(t)];
          if (w.present)
            jobs.push_back({w.view, target_axis(t), &m->base_fingerprints[static_cast<size_t>(l)][static_cast<size_t>(t)]});
        }
      cuda::line_fingerprints(*c.cuda, jobs);
      m->device = cuda::make_model_buffers(*c.cuda, shape->n_layers);
    }
#endif
    *out = m.release();
  });
}

S2FT_API void s2ft_model_destroy(s2ft_model *model) { delete model; }

S2FT_API s2ft_status s2ft_adapter_apply(s2ft_model *model, const s2ft_adapter *adapter, double scale,
                                        uint32_t flags) {
  return s2ft::guard("s2ft_adapter_apply", [&] {
    using namespace s2ft;
    s2ft_model &m = require_model(model);
    require_not_null(adapter, "adapter");
    check_flags(flags);
    const double s = resolve_scale(scale, *adapter);
    if (m.applied != nullptr)
      fail(S2FT_ERR_STATE, "model already has adapter '" + m.applied->name +
                               "' applied; remove it first or use s2ft_adapter_switch");
    transition(m, adapter, s, (flags & S2FT_APPLY_FORCE) != 0);
  });
}

S2FT_API s2ft_status s2ft_adapter_remove(s2ft_model *model) {
  return s2ft::guard("s2ft_adapter_remove", [&] {
    using namespace s2ft;
    s2ft_model &m = require_model(model);
    if (m.applied == nullptr) fail(S2FT_ERR_STATE, "model has no adapter applied");
    transition(m, nullptr, 0.0, true);
  });
}

S2FT_API s2ft_status s2ft_adapter_switch(s2ft_model *model, const s2ft_adapter *adapter, double scale,
                                         uint32_t flags) {
  return s2ft::guard("s2ft_adapter_switch", [&] {
    using namespace s2ft;
    s2ft_model &m = require_model(model);
    require_not_null(adapter, "adapter");
    check_flags(flags);
    const double s = resolve_scale(scale, *adapter);
    transition(m, adapter, s, (flags & S2FT_APPLY_FORCE) != 0);
  });
}

S2FT_API s2ft_status s2ft_model_applied(const s2ft_model *model, const s2ft_adapter **adapter, double *scale) {
  return s2ft::guard("s2ft_model_applied", [&] {
    using namespace s2ft;
    require_not_null(model, "model");
    require_not_null(adapter, "adapter");
    *adapter = model->applied;
    if (scale != nullptr) *scale = model->scale;
  });
}

}  // extern "C"
