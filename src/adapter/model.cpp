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
// Sparse entries (any of the seven weights) are the same element by
// element: W[e] = round(double(W0[e]) + scale * double(delta)), W0 saved on
// first displacement, elements only the old adapter changed get W0 back.
// Since an adapter never holds a sparse entry on one of its own lines, the
// lines and the sparse entries of one transition touch disjoint elements of
// the new adapter; where the old adapter's lines or entries meet the new
// one's, SparseStep tells the backend where each W0 is, and the writes go
// sparse restores, then lines, then new sparse elements.
//
// The plan is made here: arguments, shapes, missing weights and where each
// line and element sits in the (maybe permuted) weight. The context's backend keeps the
// saved bytes W0, checks base fingerprints and writes the lines
// (backend::Ops::model_transition), failing before it writes anything or
// not at all, so a failed call leaves the model unchanged.
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "adapter/model.hpp"
#include "backend/merge_range.hpp"
#include "common/sparse_entries.hpp"
#include "common/error.hpp"
#include "context.hpp"
#include "model_shape.hpp"

namespace s2ft {
namespace {

std::string where(int32_t layer, int32_t target) {
  return "layer " + std::to_string(layer) + " target " + target_name(target);
}

std::string where_weight(int32_t layer, int32_t weight) {
  return "layer " + std::to_string(layer) + " weight " + weight_name(weight);
}

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

// Checks the new adapter's sparse entries of (layer, weight) against the
// model and returns their flat positions in the weight as stored.
std::vector<int64_t> sparse_positions(const s2ft_model &m, int32_t layer, int32_t weight, const SparseEntry &entry) {
  const ModelWeight &mw = m.weights[static_cast<size_t>(layer)][static_cast<size_t>(weight)];
  if (!mw.present)
    fail_arg("the adapter has sparse entries on " + where_weight(layer, weight) +
             " but the model was created without that weight (layers[" + std::to_string(layer) + "]." +
             weight_field(weight) + " was NULL)");
  if (entry.delta.size() != entry.indices.size())
    fail_arg("the adapter's sparse entries of " + where_weight(layer, weight) + " are inconsistent (indices and delta sizes differ)");
  const int64_t size = mw.view.rows * mw.view.cols;
  std::vector<int64_t> positions(entry.indices.size());
  for (size_t j = 0; j < entry.indices.size(); ++j) {
    const int64_t n = entry.indices[j];
    if (n < 0 || n >= size)
      fail_arg("the adapter's sparse entry " + std::to_string(n) + " of " + where_weight(layer, weight) +
               " is out of range [0, " + std::to_string(size) + ")");
    positions[j] = mw.map.position(n);
  }
  return positions;
}

[[noreturn]] void fingerprint_mismatch(int32_t layer, int32_t target, int64_t line) {
  fail(S2FT_ERR_FORMAT, "base fingerprint mismatch at " + where(layer, target) + " line " + std::to_string(line) +
                            ": the adapter was made for a different base model (or dtype); pass "
                            "S2FT_APPLY_FORCE to apply it anyway");
}

// The one message of a merge refused because it could overflow: `place`
// names where ("layer 0 target O line 3"), `note` what the bound covers
// (may be ""), `w0_scope` and `delta_term` how its two terms read.
[[noreturn]] void overflow_refused(double scale, int32_t dtype, const backend::Refusal &r, const std::string &place,
                                   const std::string &note, const char *w0_scope, const char *delta_term) {
  char b[256];
  std::snprintf(b, sizeof b, "|W| up to %.6g%s plus |scale * delta| %s %.6g exceeds the largest finite %s, %.6g",
                r.max_abs_w0, w0_scope, delta_term, std::fabs(scale) * r.max_abs_delta, dtype_name(dtype),
                backend::largest_finite(dtype));
  char sc[32];
  std::snprintf(sc, sizeof sc, "%.6g", scale);
  fail_arg("applying the adapter at scale " + std::string(sc) + " could overflow the weights at " + place + " (" +
           note + b + "); nothing was changed");
}

// A whole-weight base fingerprint (sparse or low-rank entries) that differs.
[[noreturn]] void weight_fingerprint_mismatch(const std::string &at, const char *entries) {
  fail(S2FT_ERR_FORMAT, "base fingerprint mismatch at " + at + " (the whole weight its " + entries +
                            " made against): the adapter was made for a different base model (or dtype); pass "
                            "S2FT_APPLY_FORCE to apply it anyway");
}

[[noreturn]] void merge_overflow(int32_t dtype, double scale, const backend::Refusal &r, int32_t layer, int32_t target,
                                 int64_t line) {
  overflow_refused(scale, dtype, r, where(layer, target) + " line " + std::to_string(line), "", "", "up to");
}

[[noreturn]] void sparse_refused(const backend::SparseStep &st, double scale, const backend::Refusal &r) {
  const std::string at = where_weight(st.layer, st.weight);
  if (r.kind == backend::Refusal::kFingerprint) weight_fingerprint_mismatch(at, "sparse entries were");
  const int64_t n = st.entry->indices[static_cast<size_t>(r.line)], cols = st.w.cols;
  overflow_refused(scale, st.w.dtype, r, at + " sparse entry " + std::to_string(n),
                   "row " + std::to_string(n / cols) + ", column " + std::to_string(n % cols) + ", base order; ",
                   " in its row", "=");
}

// Checks a new low-rank entry against the model's weight (its factors'
// sizes; the set calls and the file reader keep them consistent).
void low_rank_check(const ModelWeight &mw, int32_t layer, int32_t weight, const LowRankEntry *e) {
  if (e == nullptr) return;
  if (e->rank < 1 || e->b.size() != static_cast<size_t>(mw.view.rows * e->rank) ||
      e->a.size() != static_cast<size_t>(e->rank * mw.view.cols))
    fail_arg("the adapter's low-rank entry of " + where_weight(layer, weight) + " is inconsistent (factor sizes)");
}

[[noreturn]] void low_rank_refused(const backend::LowRankStep &st, double scale, const backend::Refusal &r) {
  const std::string at = where_weight(st.layer, st.weight);
  if (r.kind == backend::Refusal::kFingerprint) weight_fingerprint_mismatch(at, "low-rank entry was");
  overflow_refused(scale, st.w.dtype, r, at, "low-rank entry, base row " + std::to_string(r.line) + "; ",
                   " in that row", "up to");
}

}  // namespace

double resolve_scale(double scale, const s2ft_adapter &a) {
  if (std::isnan(scale)) return a.default_scale;
  if (!std::isfinite(scale)) fail_arg("scale is infinite");
  return scale;
}

void check_apply_flags(uint32_t flags) {
  if (flags & ~S2FT_APPLY_FORCE) {
    char b[16];
    std::snprintf(b, sizeof b, "%x", flags & ~S2FT_APPLY_FORCE);
    fail_arg(std::string("flags has unknown bits 0x") + b);
  }
}

// Moves the model from its applied adapter (if any) to `adapter` (NULL:
// none) at `scale`. All checks first; then the writes, which cannot fail.
namespace {

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

}  // namespace

// Every check here, then one backend call that either fails before writing
// anything or makes the whole transition.
void transition(s2ft_model &m, const s2ft_adapter *adapter, double scale, bool force) {
  if (adapter != nullptr && !same_shape(adapter->shape, m.shape))
    fail_arg("adapter's model shape " + shape_string(adapter->shape) + " differs from the model's " +
             shape_string(m.shape));
  struct Planned {
    int32_t layer, target;
    const AdapterEntry *entry;
    std::vector<int64_t> positions;
  };
  std::vector<Planned> planned;
  for_each_changed(m, adapter, [&](int32_t l, int32_t t, const AdapterEntry *e) {
    planned.push_back(Planned{l, t, e, e != nullptr ? entry_positions(m, l, t, *e) : std::vector<int64_t>{}});
  });

  std::vector<backend::TransitionStep> steps;
  steps.reserve(planned.size());
  for (const Planned &p : planned) {
    const ModelWeight &mw = m.weights[static_cast<size_t>(p.layer)][static_cast<size_t>(p.target)];
    backend::TransitionStep st;
    st.layer = p.layer;
    st.target = p.target;
    st.w = mw.view;  // present: a new entry was checked, an old record implies one was
    st.by_columns = target_axis(p.target) == S2FT_AXIS_COLUMNS;
    st.line_length = target_line_length(m.shape, p.target);
    st.old_positions = &m.displaced[static_cast<size_t>(p.layer)][static_cast<size_t>(p.target)];
    st.new_positions = &p.positions;
    st.entry = p.entry;
    if (p.entry != nullptr && adapter != nullptr) st.max_abs_delta = adapter->max_abs_delta(p.layer, p.target);
    steps.push_back(st);
  }

  // The sparse entries of every (layer, weight) the transition touches.
  std::vector<backend::SparseStep> sparse;
  std::vector<std::vector<int64_t>> sparse_new;  // positions, one per sparse step
  for (int32_t l = 0; l < m.shape.n_layers; ++l)
    for (int32_t wt = 0; wt < S2FT_NUM_WEIGHTS; ++wt) {
      const SparseEntry *e = nullptr;
      if (adapter != nullptr) {
        const SparseEntry &ae = adapter->sparse[static_cast<size_t>(l)][static_cast<size_t>(wt)];
        if (!ae.empty()) e = &ae;
      }
      const SparseDisplaced &old = m.sparse_displaced[static_cast<size_t>(l)][static_cast<size_t>(wt)];
      if (e == nullptr && old.positions.empty()) continue;
      sparse_new.push_back(e != nullptr ? sparse_positions(m, l, wt, *e) : std::vector<int64_t>{});
      backend::SparseStep st;
      st.layer = l;
      st.weight = wt;
      st.entry = e;
      if (e != nullptr) {
        st.max_abs_delta = adapter->max_abs_sparse_delta(l, wt);
        st.check_fingerprint = !force && e->fingerprint != 0;
      }
      sparse.push_back(std::move(st));
    }
  for (size_t i = 0; i < sparse.size(); ++i) {
    backend::SparseStep &st = sparse[i];
    const int32_t l = st.layer, wt = st.weight;
    const ModelWeight &mw = m.weights[static_cast<size_t>(l)][static_cast<size_t>(wt)];
    const SparseDisplaced &old = m.sparse_displaced[static_cast<size_t>(l)][static_cast<size_t>(wt)];
    st.w = mw.view;  // present: a new entry was checked, an old record implies one was
    st.old_positions = &old.positions;
    st.new_positions = &sparse_new[i];
    const std::vector<int64_t> none;
    const std::vector<int64_t> &new_base = st.entry != nullptr ? st.entry->indices : none;
    // Old and new base indices are both ascending: one merge walk pairs them.
    st.from_old = entry_sources(old.base, new_base);
    std::vector<char> kept(old.base.size(), 0);
    for (int64_t o : st.from_old)
      if (o >= 0) kept[static_cast<size_t>(o)] = 1;
    for (size_t o = 0; o < old.base.size(); ++o)
      if (!kept[o]) st.restore.push_back(static_cast<int64_t>(o));
    st.from_line.assign(new_base.size(), -1);
    if (wt >= S2FT_NUM_TARGETS) continue;
    // The lines of the same weight: the old ones (where some new elements'
    // W0 is saved) and the new ones (which some old elements lie on).
    for (size_t k = 0; k < planned.size(); ++k)
      if (planned[k].layer == l && planned[k].target == wt) st.lines_step = static_cast<int64_t>(k);
    if (st.lines_step < 0) continue;
    const Planned &p = planned[static_cast<size_t>(st.lines_step)];
    const bool columns = target_axis(wt) == S2FT_AXIS_COLUMNS;
    const int64_t cols = mw.view.cols, n_lines = columns ? mw.view.cols : mw.view.rows;
    const auto line_of = [&](int64_t pos) { return columns ? pos % cols : pos / cols; };
    const auto along = [&](int64_t pos) { return columns ? pos / cols : pos % cols; };
    const std::vector<int64_t> &old_lines = m.displaced[static_cast<size_t>(l)][static_cast<size_t>(wt)];
    if (!old_lines.empty() && !new_base.empty()) {
      std::vector<int64_t> index(static_cast<size_t>(n_lines), -1);
      for (size_t j = 0; j < old_lines.size(); ++j) index[static_cast<size_t>(old_lines[j])] = static_cast<int64_t>(j);
      for (size_t j = 0; j < sparse_new[i].size(); ++j) st.from_line[j] = index[static_cast<size_t>(line_of(sparse_new[i][j]))];
    }
    if (!p.positions.empty() && !old.positions.empty()) {
      std::vector<int64_t> index(static_cast<size_t>(n_lines), -1);
      for (size_t j = 0; j < p.positions.size(); ++j) index[static_cast<size_t>(p.positions[j])] = static_cast<int64_t>(j);
      for (size_t o = 0; o < old.positions.size(); ++o) {
        const int64_t pos = old.positions[o], j = index[static_cast<size_t>(line_of(pos))];
        if (j >= 0) st.onto_lines.push_back({static_cast<int64_t>(o), j, along(pos)});
      }
    }
  }

  // The low-rank entries of the old and the new adapter, per (layer, weight).
  std::vector<backend::LowRankStep> low_rank;
  for (int32_t l = 0; l < m.shape.n_layers; ++l)
    for (int32_t wt = 0; wt < S2FT_NUM_WEIGHTS; ++wt) {
      const auto entry_of = [&](const s2ft_adapter *a) -> const LowRankEntry * {
        if (a == nullptr) return nullptr;
        const LowRankEntry &e = a->low_rank[static_cast<size_t>(l)][static_cast<size_t>(wt)];
        return e.empty() ? nullptr : &e;
      };
      backend::LowRankStep st;
      st.old_entry = entry_of(m.applied);
      st.entry = entry_of(adapter);
      if (st.old_entry == nullptr && st.entry == nullptr) continue;
      const ModelWeight &mw = m.weights[static_cast<size_t>(l)][static_cast<size_t>(wt)];
      if (!mw.present)
        fail_arg("the adapter has a low-rank entry for " + where_weight(l, wt) +
                 " but the model was created without that weight (layers[" + std::to_string(l) + "]." +
                 weight_field(wt) + " was NULL)");
      low_rank_check(mw, l, wt, st.entry);
      st.layer = l;
      st.weight = wt;
      st.w = mw.view;
      st.row_map = &mw.map.rows;
      st.col_map = &mw.map.cols;
      st.old_scale = m.scale;
      st.check_fingerprint = st.entry != nullptr && !force && st.entry->fingerprint != 0;
      for (size_t k = 0; k < planned.size(); ++k)
        if (planned[k].layer == l && planned[k].target == wt) st.lines_step = static_cast<int64_t>(k);
      for (size_t k = 0; k < sparse.size(); ++k)
        if (sparse[k].layer == l && sparse[k].weight == wt) st.sparse_step = static_cast<int64_t>(k);
      low_rank.push_back(st);
    }
  backend::Refusal refused;
  run(*m.ctx, &backend::Ops::model_transition, m.records.get(), steps, sparse, low_rank, adapter, scale, force,
      &refused);
  if (refused.step >= 0 && refused.low_rank) low_rank_refused(low_rank[static_cast<size_t>(refused.step)], scale, refused);
  if (refused.step >= 0 && refused.sparse) sparse_refused(sparse[static_cast<size_t>(refused.step)], scale, refused);
  if (refused.step >= 0) {
    const backend::TransitionStep &st = steps[static_cast<size_t>(refused.step)];
    const int64_t line = st.entry->lines[static_cast<size_t>(refused.line)];
    if (refused.kind == backend::Refusal::kFingerprint) fingerprint_mismatch(st.layer, st.target, line);
    merge_overflow(st.w.dtype, scale, refused, st.layer, st.target, line);
  }
  for (Planned &p : planned)
    m.displaced[static_cast<size_t>(p.layer)][static_cast<size_t>(p.target)] = std::move(p.positions);
  for (size_t i = 0; i < sparse.size(); ++i) {
    SparseDisplaced &d = m.sparse_displaced[static_cast<size_t>(sparse[i].layer)][static_cast<size_t>(sparse[i].weight)];
    d.base = sparse[i].entry != nullptr ? sparse[i].entry->indices : std::vector<int64_t>{};
    d.positions = std::move(sparse_new[i]);
  }
  m.applied = adapter;
  m.scale = adapter != nullptr ? scale : 0.0;
  if (m.owned && m.owned.get() != adapter) m.owned.reset();  // a loaded adapter is no longer applied
}

namespace {

s2ft_model &require_model(s2ft_model *m) {
  require_live(m, "model");
  return *m;
}

}  // namespace

std::unique_ptr<s2ft_model> make_model(s2ft_context *ctx, const s2ft_model_shape *shape,
                                       const s2ft_layer_weights *layers, const s2ft_selection *perm) {
  s2ft_context &c = require_context(ctx);
  check_model_shape(shape, "shape");
  require_not_null(layers, "layers");
  require_live_or_null(perm, "perm");
  if (perm != nullptr && !same_shape(perm->shape, *shape))
    fail_arg("perm was made for model shape " + shape_string(perm->shape) + ", not " + shape_string(*shape));

  auto m = std::make_unique<s2ft_model>();
  m->ctx = ctx;
  m->shape = *shape;
  m->weights.resize(static_cast<size_t>(shape->n_layers));
  m->displaced.resize(static_cast<size_t>(shape->n_layers));
  m->sparse_displaced.resize(static_cast<size_t>(shape->n_layers));
  std::vector<std::pair<Matrix, std::string>> all;
  for (int32_t l = 0; l < shape->n_layers; ++l)
    for (int32_t t = 0; t < S2FT_NUM_WEIGHTS; ++t) {
      const s2ft_tensor *tensor = layer_weight(layers[l], t);
      if (tensor == nullptr) continue;
      const std::string name = "layers[" + std::to_string(l) + "]." + weight_field(t);
      ModelWeight &w = m->weights[static_cast<size_t>(l)][static_cast<size_t>(t)];
      w.view = check_matrix(tensor, name.c_str(), c.device);
      int64_t rows, cols;
      weight_shape(*shape, t, &rows, &cols);
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
  std::vector<backend::TargetWeight> present;
  for (int32_t l = 0; l < shape->n_layers; ++l)
    for (int32_t t = 0; t < S2FT_NUM_WEIGHTS; ++t) {
      ModelWeight &w = m->weights[static_cast<size_t>(l)][static_cast<size_t>(t)];
      if (!w.present) continue;
      w.map = element_map(m->perm.get(), *shape, l, t);
      backend::TargetWeight tw;
      tw.layer = l;
      tw.target = t;
      tw.w = w.view;
      tw.axis = t < S2FT_NUM_TARGETS ? target_axis(t) : S2FT_AXIS_ROWS;
      tw.row_map = w.map.rows;
      tw.col_map = w.map.cols;
      present.push_back(std::move(tw));
    }
  run(c, &backend::Ops::model_create, *shape, present, &m->records);
  return m;
}

}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_model_create(s2ft_context *ctx, const s2ft_model_shape *shape,
                                       const s2ft_layer_weights *layers, const s2ft_selection *perm,
                                       s2ft_model **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_model_create", [&] {
    s2ft::require_not_null(out, "out");
    *out = s2ft::make_model(ctx, shape, layers, perm).release();
  });
}

S2FT_API void s2ft_model_destroy(s2ft_model *model) {
  if (s2ft::destroyable(model)) delete model;
}

S2FT_API s2ft_status s2ft_adapter_apply(s2ft_model *model, const s2ft_adapter *adapter, double scale,
                                        uint32_t flags) {
  return s2ft::guard("s2ft_adapter_apply", [&] {
    using namespace s2ft;
    s2ft_model &m = require_model(model);
    require_live(adapter, "adapter");
    check_apply_flags(flags);
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
    require_live(adapter, "adapter");
    check_apply_flags(flags);
    const double s = resolve_scale(scale, *adapter);
    transition(m, adapter, s, (flags & S2FT_APPLY_FORCE) != 0);
  });
}

S2FT_API s2ft_status s2ft_model_applied(const s2ft_model *model, const s2ft_adapter **adapter, double *scale) {
  return s2ft::guard("s2ft_model_applied", [&] {
    using namespace s2ft;
    require_live(model, "model");
    require_not_null(adapter, "adapter");
    *adapter = model->applied;
    if (scale != nullptr) *scale = model->scale;
  });
}

}  // extern "C"
