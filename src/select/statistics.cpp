// Calibration statistics: per-unit sums of squares that the selection
// strategies turn into scores (score = sqrt(sum)).
//
// A unit's lines in each weight (W is [out, in]):
//   O    o_proj    [d_model, n_heads*hd]   columns [h*hd, (h+1)*hd) of query head h
//   V    v_proj    [n_kv*hd, d_model]      rows    [g*hd, (g+1)*hd) of KV head g
//   DOWN down_proj [d_model, d_ff]         column  c
//   UP   up_proj   [d_ff, d_model]         row     c
// weight:     sum of W[i, j]^2 over the unit's lines;
// activation: sum over tokens of x[t, c]^2 over the unit's input columns c
//             (only the inputs of o_proj and down_proj exist as units);
// gradient:   sum over calibration batches of dW[i, j]^2 over the unit's
//             lines, dW = dy^T x for the batch;
// principal:  sum of W_r[i, j]^2 over the unit's lines, W_r the weight's
//             rank-r truncated SVD (LIFT's principal weights), from the
//             backend's line norms of W_r (host only: see statistics.hpp).
// Sums are kept in double so that millions of tokens do not lose the small
// contributions.
//
// The context's backend computes the sums into one array on its device;
// adding never synchronises, and reading (s2ft_statistics_get, s2ft_select)
// copies the records changed since the last read, in one read.
#include "select/statistics.hpp"

#include <algorithm>
#include <memory>
#include <string>

#include "common/error.hpp"
#include "common/tensor.hpp"
#include "context.hpp"
#include "select/selection.hpp"

namespace s2ft {

int64_t statistic_units(const s2ft_model_shape &s, int32_t target) {
  return selection_units(s, target, S2FT_HEADS_SINGLE);  // statistics are per query head
}

const char *statistic_kind_name(int32_t kind) {
  switch (kind) {
    case S2FT_STAT_WEIGHT: return "weight";
    case S2FT_STAT_ACTIVATION: return "activation";
    case S2FT_STAT_GRADIENT: return "gradient";
    case S2FT_STAT_PRINCIPAL: return "principal";
    default: return "?";
  }
}

std::string missing_statistic_message(int32_t layer, int32_t target, int32_t kind) {
  const std::string l = std::to_string(layer);
  std::string m = std::string("no ") + statistic_kind_name(kind) + " statistics for layer " + l + " target " +
                  target_name(target);
  switch (kind) {
    case S2FT_STAT_WEIGHT: return m + " (record the weight with s2ft_statistics_add_weight())";
    case S2FT_STAT_GRADIENT: return m + " (feed calibration batches with s2ft_statistics_add_gradient())";
    case S2FT_STAT_PRINCIPAL:
      return m + " (record the weight with s2ft_statistics_add_principal(..., rank))";
    default: {
      const bool o_side = target == S2FT_TARGET_O || target == S2FT_TARGET_V;
      return m + " (feed the " + (o_side ? "o_proj" : "down_proj") + " input of layer " + l +
             " with s2ft_statistics_add_activation(..., " + (o_side ? "S2FT_TARGET_O" : "S2FT_TARGET_DOWN") +
             ", x))";
    }
  }
}

namespace {

// Calls f(record) for every record the statistics can hold (activations
// exist only for O and DOWN).
template <typename S, typename F>
void for_each_record(S &stats, F &&f) {
  for (auto &layer : stats.records)
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t)
      for (int32_t k = S2FT_STAT_WEIGHT; k <= S2FT_STAT_GRADIENT; ++k) {
        if (k == S2FT_STAT_ACTIVATION && target_axis(t) != S2FT_AXIS_COLUMNS) continue;
        f(layer[static_cast<size_t>(t)][static_cast<size_t>(k)], t);
      }
}

// Copies the backend's sums of every stale record to its host vector, with
// one read of the span that covers them all.
void refresh_host_sums(const s2ft_statistics &stats) {
  if (!stats.stale) return;
  int64_t lo = INT64_MAX, hi = 0;
  for_each_record(stats, [&](const s2ft_statistics::Record &r, int32_t) {
    if (!r.stale) return;
    lo = std::min(lo, r.offset);
    hi = std::max(hi, r.offset + static_cast<int64_t>(r.sums.size()));
  });
  if (hi > lo) {
    std::vector<double> span(static_cast<size_t>(hi - lo));
    run(*stats.ctx, &backend::Ops::statistics_read, stats.sums.get(), lo, hi - lo, span.data());
    for_each_record(stats, [&](const s2ft_statistics::Record &r, int32_t) {
      if (!r.stale) return;
      std::copy_n(span.begin() + (r.offset - lo), r.sums.size(), r.sums.begin());
      r.stale = false;
    });
  }
  stats.stale = false;
}

}  // namespace

bool unit_sums(const s2ft_statistics &stats, int32_t layer, int32_t target, int32_t kind, std::vector<double> *out) {
  refresh_host_sums(stats);
  const auto &rec = stats.records[static_cast<size_t>(layer)];
  if (kind == S2FT_STAT_ACTIVATION && target == S2FT_TARGET_V) {
    // A KV head's input activation is that of the O columns of its query heads.
    const auto &o = rec[S2FT_TARGET_O][S2FT_STAT_ACTIVATION];
    if (!o.present) return false;
    const int64_t r = heads_per_group(stats.shape);
    out->assign(static_cast<size_t>(stats.shape.n_kv_heads), 0.0);
    for (int64_t h = 0; h < stats.shape.n_heads; ++h) (*out)[static_cast<size_t>(h / r)] += o.sums[static_cast<size_t>(h)];
    return true;
  }
  if (kind == S2FT_STAT_ACTIVATION && target == S2FT_TARGET_UP) target = S2FT_TARGET_DOWN;
  const auto &r = rec[static_cast<size_t>(target)][static_cast<size_t>(kind)];
  if (!r.present) return false;
  *out = r.sums;
  return true;
}

namespace {

s2ft_statistics &require_stats(s2ft_statistics *stats) {
  require_live(stats, "stats");
  return *stats;
}

s2ft_statistics::Record &record(s2ft_statistics &s, int32_t layer, int32_t target, int32_t kind) {
  return s.records[static_cast<size_t>(layer)][static_cast<size_t>(target)][static_cast<size_t>(kind)];
}

// Starts a record at zero the first time it is written.
void ensure_record(s2ft_statistics::Record &r, int64_t units) {
  if (!r.present) {
    r.sums.assign(static_cast<size_t>(units), 0.0);
    r.present = true;
  }
}

// Where the backend puts (layer, target, kind)'s unit sums; `accumulate`
// adds to the record (which then must exist to be added to).
backend::UnitSums unit_sums_of(const s2ft_statistics &s, const s2ft_statistics::Record &r, int32_t target,
                               bool accumulate) {
  backend::UnitSums u;
  u.offset = r.offset;
  u.units = statistic_units(s.shape, target);
  u.width = target_unit_width(s.shape, target);
  u.by_columns = target_axis(target) == S2FT_AXIS_COLUMNS;
  u.accumulate = accumulate && r.present;
  return u;
}

// After the backend changed record r: its host copy is stale.
void mark_changed(s2ft_statistics &s, s2ft_statistics::Record &r, int64_t units) {
  ensure_record(r, units);
  r.stale = true;
  s.stale = true;
}

}  // namespace
}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_statistics_create(s2ft_context *ctx, const s2ft_model_shape *shape, s2ft_statistics **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_statistics_create", [&] {
    s2ft::require_not_null(out, "out");
    s2ft::require_context(ctx);
    s2ft::check_model_shape(shape, "shape");
    auto stats = std::make_unique<s2ft_statistics>();
    stats->ctx = ctx;
    stats->shape = *shape;
    stats->records.resize(static_cast<size_t>(shape->n_layers));
    // Every record gets its place in one array now, so that adding never
    // allocates (and never synchronises).
    int64_t size = 0;
    s2ft::for_each_record(*stats, [&](s2ft_statistics::Record &r, int32_t t) {
      r.offset = size;
      size += s2ft::statistic_units(*shape, t);
    });
    s2ft::run(*ctx, &s2ft::backend::Ops::statistics_create, size, &stats->sums);
    *out = stats.release();
  });
}

S2FT_API void s2ft_statistics_destroy(s2ft_statistics *stats) {
  if (s2ft::destroyable(stats)) delete stats;
}

S2FT_API s2ft_status s2ft_statistics_add_weight(s2ft_statistics *stats, int32_t layer, int32_t target,
                                                const s2ft_tensor *weight) {
  return s2ft::guard("s2ft_statistics_add_weight", [&] {
    s2ft_statistics &s = s2ft::require_stats(stats);
    s2ft::check_layer(s.shape, layer);
    s2ft::check_target(target);
    const s2ft::Matrix w = s2ft::check_matrix(weight, "weight", s.ctx->device);
    int64_t rows = 0, cols = 0;
    s2ft::target_weight_shape(s.shape, target, &rows, &cols);
    s2ft::require_shape(w, "weight", rows, cols);
    // The weight statistic replaces the record's sums.
    s2ft_statistics::Record &r = s2ft::record(s, layer, target, S2FT_STAT_WEIGHT);
    s2ft::run(*s.ctx, &s2ft::backend::Ops::statistics_add_lines, s.sums.get(),
              s2ft::unit_sums_of(s, r, target, false), w);
    s2ft::mark_changed(s, r, s2ft::statistic_units(s.shape, target));
  });
}

S2FT_API s2ft_status s2ft_statistics_add_activation(s2ft_statistics *stats, int32_t layer, int32_t target,
                                                    const s2ft_tensor *x) {
  return s2ft::guard("s2ft_statistics_add_activation", [&] {
    s2ft_statistics &s = s2ft::require_stats(stats);
    s2ft::check_layer(s.shape, layer);
    s2ft::check_target(target);
    if (s2ft::target_axis(target) != S2FT_AXIS_COLUMNS)
      s2ft::fail_arg(std::string("target ") + s2ft::target_name(target) +
                     " has no input activation of its own: pass the " +
                     (target == S2FT_TARGET_V ? "o_proj input with S2FT_TARGET_O" : "down_proj input with S2FT_TARGET_DOWN") +
                     " (its units are scored from it)");
    const s2ft::Matrix m = s2ft::check_matrix(x, "x", s.ctx->device);
    int64_t rows = 0, cols = 0;
    s2ft::target_weight_shape(s.shape, target, &rows, &cols);
    if (m.cols != cols)
      s2ft::fail_shape("x must be [T, " + std::to_string(cols) + "] (the input of " +
                       (target == S2FT_TARGET_O ? "o_proj" : "down_proj") + "), got [" + std::to_string(m.rows) +
                       ", " + std::to_string(m.cols) + "]");
    if (m.rows == 0) s2ft::fail_shape("x has no rows (T must be at least 1)");
    s2ft_statistics::Record &r = s2ft::record(s, layer, target, S2FT_STAT_ACTIVATION);
    s2ft::run(*s.ctx, &s2ft::backend::Ops::statistics_add_lines, s.sums.get(),
              s2ft::unit_sums_of(s, r, target, true), m);
    s2ft::mark_changed(s, r, s2ft::statistic_units(s.shape, target));
  });
}

S2FT_API s2ft_status s2ft_statistics_add_gradient(s2ft_statistics *stats, int32_t layer, int32_t target,
                                                  const s2ft_tensor *x, const s2ft_tensor *dy) {
  return s2ft::guard("s2ft_statistics_add_gradient", [&] {
    s2ft_statistics &s = s2ft::require_stats(stats);
    s2ft::check_layer(s.shape, layer);
    s2ft::check_target(target);
    const s2ft::Matrix xm = s2ft::check_matrix(x, "x", s.ctx->device);
    const s2ft::Matrix dym = s2ft::check_matrix(dy, "dy", s.ctx->device);
    int64_t out_dim = 0, in_dim = 0;
    s2ft::target_weight_shape(s.shape, target, &out_dim, &in_dim);
    if (xm.cols != in_dim)
      s2ft::fail_shape("x must be [T, " + std::to_string(in_dim) + "], got [" + std::to_string(xm.rows) + ", " +
                       std::to_string(xm.cols) + "]");
    if (dym.cols != out_dim)
      s2ft::fail_shape("dy must be [T, " + std::to_string(out_dim) + "], got [" + std::to_string(dym.rows) + ", " +
                       std::to_string(dym.cols) + "]");
    if (xm.rows != dym.rows)
      s2ft::fail_shape("x has " + std::to_string(xm.rows) + " rows but dy has " + std::to_string(dym.rows) +
                       " (both are [T, ...])");
    if (xm.rows == 0) s2ft::fail_shape("x and dy have no rows (T must be at least 1)");
    // Sums of the squares of dW = dy^T x ([out, in]) by unit.
    s2ft_statistics::Record &r = s2ft::record(s, layer, target, S2FT_STAT_GRADIENT);
    s2ft::run(*s.ctx, &s2ft::backend::Ops::statistics_add_gradient, s.sums.get(),
              s2ft::unit_sums_of(s, r, target, true), xm, dym);
    s2ft::mark_changed(s, r, s2ft::statistic_units(s.shape, target));
  });
}

// LIFT's score for S2FT: the squared norms of W_r's lines (the backend's
// SVD, to host), summed by unit; the record is replaced, on the host.
S2FT_API s2ft_status s2ft_statistics_add_principal(s2ft_statistics *stats, int32_t layer, int32_t target,
                                                   const s2ft_tensor *weight, int32_t rank) {
  return s2ft::guard("s2ft_statistics_add_principal", [&] {
    s2ft_statistics &s = s2ft::require_stats(stats);
    s2ft::check_layer(s.shape, layer);
    s2ft::check_target(target);
    const s2ft::Matrix w = s2ft::check_matrix(weight, "weight", s.ctx->device);
    int64_t rows = 0, cols = 0;
    s2ft::target_weight_shape(s.shape, target, &rows, &cols);
    s2ft::require_shape(w, "weight", rows, cols);
    const int64_t min_dim = std::min(rows, cols);
    if (rank < 1 || rank > min_dim)
      s2ft::fail_arg("rank is " + std::to_string(rank) + "; it must be in [1, min(rows, cols) = " +
                     std::to_string(min_dim) + "] for the " + s2ft::target_name(target) + " weight [" +
                     std::to_string(rows) + ", " + std::to_string(cols) + "]");
    const bool by_columns = s2ft::target_axis(target) == S2FT_AXIS_COLUMNS;
    std::vector<double> lines;
    s2ft::run(*s.ctx, &s2ft::backend::Ops::principal_line_norms, w, static_cast<int64_t>(rank), by_columns, &lines);
    if (static_cast<int64_t>(lines.size()) != (by_columns ? cols : rows))
      s2ft::fail(S2FT_ERR_INTERNAL, "the backend returned " + std::to_string(lines.size()) + " line norms, not " +
                                        std::to_string(by_columns ? cols : rows));
    const int64_t units = s2ft::statistic_units(s.shape, target), width = s2ft::target_unit_width(s.shape, target);
    std::vector<double> sums(static_cast<size_t>(units), 0.0);
    for (size_t l = 0; l < lines.size(); ++l) sums[l / static_cast<size_t>(width)] += lines[l];
    s2ft_statistics::Record &r = s2ft::record(s, layer, target, S2FT_STAT_PRINCIPAL);
    r.sums = std::move(sums);
    r.present = true;
    r.stale = false;
    r.rank = rank;
  });
}

S2FT_API s2ft_status s2ft_statistics_get(const s2ft_statistics *stats, int32_t layer, int32_t target, int32_t kind,
                                         double *out, int64_t capacity, int64_t *n_units) {
  return s2ft::guard("s2ft_statistics_get", [&] {
    s2ft::require_live(stats, "stats");
    s2ft::require_not_null(n_units, "n_units");
    s2ft::check_layer(stats->shape, layer);
    s2ft::check_target(target);
    if (kind < S2FT_STAT_WEIGHT || kind > S2FT_STAT_PRINCIPAL)
      s2ft::fail_arg("kind " + std::to_string(kind) +
                     " is not S2FT_STAT_WEIGHT (0), S2FT_STAT_ACTIVATION (1), S2FT_STAT_GRADIENT (2) or "
                     "S2FT_STAT_PRINCIPAL (3)");
    const int64_t n = s2ft::statistic_units(stats->shape, target);
    if (out == nullptr) {
      *n_units = n;
      return;
    }
    if (capacity < n)
      s2ft::fail_arg("capacity " + std::to_string(capacity) + " is below the " + std::to_string(n) + " units of target " +
                     s2ft::target_name(target));
    std::vector<double> sums;
    if (!s2ft::unit_sums(*stats, layer, target, kind, &sums))
      s2ft::fail(S2FT_ERR_STATE, s2ft::missing_statistic_message(layer, target, kind));
    std::copy(sums.begin(), sums.end(), out);
    *n_units = n;
  });
}

}  // extern "C"
