// s2ft_select: ranks every layer's units by a strategy's score and keeps the
// best k per target (per layer, or across all layers).
//
// Scores (s = sum of squares from the statistics, per selection unit):
//   RANDOM      u ~ U[0, 1) from the library's SplitMix64, one stream per
//               (seed, layer, target), so results are the same everywhere;
//   WEIGHT      sqrt(s_weight)
//   ACTIVATION  sqrt(s_activation)
//   WEIGHT_ACT  sqrt(s_weight) * sqrt(s_activation)
//   GRADIENT    sqrt(s_gradient)
//   PRINCIPAL   sqrt(s_principal): the Frobenius norm of the unit's slice of
//               the weight's rank-r truncated SVD W_r (LIFT's principal
//               weights made structured; s2ft_statistics_add_principal)
// Under S2FT_HEADS_BY_GROUP an O unit is a KV group and its s is the sum of
// its query heads' sums (the norm of the group's whole column block).
// LARGEST takes the highest scores, SMALLEST the lowest. Equal scores are
// ordered by a seeded random key, then by (layer, index), so ties do not
// always favour low indices and the result is still deterministic.
//
// Budget: k = max(1, round_half_up(ratio * units)) or k = count, where
// units is per layer (PER_LAYER) or n_layers * per-layer units (GLOBAL).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/options.hpp"
#include "common/rng.hpp"
#include "context.hpp"
#include "select/selection.hpp"
#include "select/statistics.hpp"

namespace s2ft {
namespace {

const char *strategy_name(int32_t s) {
  switch (s) {
    case S2FT_STRATEGY_RANDOM: return "random";
    case S2FT_STRATEGY_WEIGHT: return "weight";
    case S2FT_STRATEGY_ACTIVATION: return "activation";
    case S2FT_STRATEGY_WEIGHT_ACT: return "weight_act";
    case S2FT_STRATEGY_GRADIENT: return "gradient";
    case S2FT_STRATEGY_PRINCIPAL: return "principal";
    default: return "?";
  }
}

// Number of units to pick from `available`, after validating the budget.
int64_t budget(const s2ft_select_options &o, int32_t t, int64_t available) {
  const std::string tn = target_name(t);
  const double ratio = o.ratio[t];
  const int64_t count = o.count[t];
  const bool has_ratio = ratio != 0.0 || std::isnan(ratio);
  if (has_ratio && count != 0)
    fail_arg("opts->ratio[" + tn + "] and opts->count[" + tn + "] are both set; set exactly one (the other to 0)");
  if (!has_ratio && count == 0)
    fail_arg("target " + tn + " is in opts->targets but neither opts->ratio[" + tn + "] nor opts->count[" + tn +
             "] is set");
  if (has_ratio) {
    if (!(ratio > 0.0 && ratio <= 1.0))
      fail_arg("opts->ratio[" + tn + "] is " + std::to_string(ratio) + "; it must be in (0, 1]");
    // Round half up; the tiny relative slack keeps e.g. 0.35 * 10 at 4.
    const double x = ratio * static_cast<double>(available);
    const int64_t k = static_cast<int64_t>(std::floor(x + 0.5 + x * 4 * DBL_EPSILON));
    return std::min(available, std::max<int64_t>(1, k));
  }
  if (count < 1) fail_arg("opts->count[" + tn + "] is " + std::to_string(count) + "; it must be at least 1");
  if (count > available)
    fail_arg("opts->count[" + tn + "] is " + std::to_string(count) + " but target " + tn + " has only " +
             std::to_string(available) + " units" + (o.allocation == S2FT_ALLOCATE_GLOBAL ? " in all layers" : " per layer"));
  return count;
}

void check_options(const s2ft_select_options &o) {
  check_options_version(o.version, S2FT_SELECT_OPTIONS_VERSION, "s2ft_select_options_init");
  if (o.targets == 0) fail_arg("opts->targets is empty; set at least one S2FT_TARGET_BIT()");
  if ((o.targets & ~((1u << S2FT_NUM_TARGETS) - 1u)) != 0)
    fail_arg("opts->targets " + std::to_string(o.targets) + " has bits that are not targets");
  if (o.strategy < S2FT_STRATEGY_RANDOM || o.strategy > S2FT_STRATEGY_PRINCIPAL)
    fail_arg("opts->strategy " + std::to_string(o.strategy) + " is not an S2FT_STRATEGY_* value (0..5)");
  if (o.order != S2FT_ORDER_LARGEST && o.order != S2FT_ORDER_SMALLEST)
    fail_arg("opts->order " + std::to_string(o.order) + " is not S2FT_ORDER_LARGEST (0) or S2FT_ORDER_SMALLEST (1)");
  if (o.allocation != S2FT_ALLOCATE_PER_LAYER && o.allocation != S2FT_ALLOCATE_GLOBAL)
    fail_arg("opts->allocation " + std::to_string(o.allocation) +
             " is not S2FT_ALLOCATE_PER_LAYER (0) or S2FT_ALLOCATE_GLOBAL (1)");
  check_head_granularity(o.head_granularity, "opts->head_granularity");
}

// A seed for one (layer, target) stream: each step is a SplitMix64 output,
// a bijective mix, so distinct inputs give unrelated streams.
uint64_t stream_seed(uint64_t seed, int32_t layer, int32_t target, uint64_t purpose) {
  uint64_t h = Rng(seed ^ 0x5332465453454c31ull).next();  // "S2FTSEL1"
  h = Rng(h + static_cast<uint64_t>(layer)).next();
  h = Rng(h + static_cast<uint64_t>(target)).next();
  return Rng(h + purpose).next();
}

// Sums of squares of `kind` in selection units of (layer, target).
std::vector<double> selection_sums(const s2ft_statistics &stats, int32_t layer, int32_t target, int32_t kind,
                                   int32_t granularity) {
  std::vector<double> sums;
  if (!unit_sums(stats, layer, target, kind, &sums)) fail_arg(missing_statistic_message(layer, target, kind));
  if (target == S2FT_TARGET_O && granularity == S2FT_HEADS_BY_GROUP) {
    const int64_t r = heads_per_group(stats.shape);
    std::vector<double> groups(static_cast<size_t>(stats.shape.n_kv_heads), 0.0);
    for (size_t h = 0; h < sums.size(); ++h) groups[h / static_cast<size_t>(r)] += sums[h];
    return groups;
  }
  return sums;
}

std::vector<double> scores(const s2ft_model_shape &shape, const s2ft_select_options &o,
                           const s2ft_statistics *stats, int32_t layer, int32_t t) {
  const int64_t n = selection_units(shape, t, o.head_granularity);
  std::vector<double> s(static_cast<size_t>(n));
  switch (o.strategy) {
    case S2FT_STRATEGY_RANDOM: {
      Rng rng(stream_seed(o.seed, layer, t, 0));
      for (double &v : s) v = rng.uniform();
      return s;
    }
    case S2FT_STRATEGY_WEIGHT_ACT: {
      const std::vector<double> w = selection_sums(*stats, layer, t, S2FT_STAT_WEIGHT, o.head_granularity);
      const std::vector<double> a = selection_sums(*stats, layer, t, S2FT_STAT_ACTIVATION, o.head_granularity);
      for (size_t i = 0; i < s.size(); ++i) s[i] = std::sqrt(w[i]) * std::sqrt(a[i]);
      break;
    }
    default: {
      const int32_t kind = o.strategy == S2FT_STRATEGY_WEIGHT       ? S2FT_STAT_WEIGHT
                           : o.strategy == S2FT_STRATEGY_ACTIVATION ? S2FT_STAT_ACTIVATION
                           : o.strategy == S2FT_STRATEGY_PRINCIPAL  ? S2FT_STAT_PRINCIPAL
                                                                    : S2FT_STAT_GRADIENT;
      const std::vector<double> v = selection_sums(*stats, layer, t, kind, o.head_granularity);
      for (size_t i = 0; i < s.size(); ++i) s[i] = std::sqrt(v[i]);
      break;
    }
  }
  for (size_t i = 0; i < s.size(); ++i)
    if (!std::isfinite(s[i]))
      fail_arg(std::string("the ") + strategy_name(o.strategy) + " score of unit " + std::to_string(i) + " of layer " +
               std::to_string(layer) + " target " + target_name(t) +
               " is not finite (NaN or Inf in the statistics or weights)");
  return s;
}

struct Candidate {
  double score;
  uint64_t key;  // tie-break
  int32_t layer;
  int64_t unit;
};

// Picks k of `c` by the order's score, then key, then (layer, unit).
void take_best(std::vector<Candidate> &c, int64_t k, bool largest) {
  auto better = [largest](const Candidate &a, const Candidate &b) {
    if (a.score != b.score) return largest ? a.score > b.score : a.score < b.score;
    if (a.key != b.key) return a.key < b.key;
    if (a.layer != b.layer) return a.layer < b.layer;
    return a.unit < b.unit;
  };
  std::sort(c.begin(), c.end(), better);
  c.resize(static_cast<size_t>(k));
}

// The rank of the principal records the selection read, when they all
// share one (0 otherwise).
int64_t common_principal_rank(const s2ft_statistics &stats, uint32_t targets) {
  int64_t rank = 0;
  for (const auto &layer : stats.records)
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      if ((targets & S2FT_TARGET_BIT(t)) == 0) continue;
      const int64_t r = layer[static_cast<size_t>(t)][S2FT_STAT_PRINCIPAL].rank;
      if (rank != 0 && r != rank) return 0;
      rank = r;
    }
  return rank;
}

std::string options_json(const s2ft_select_options &o, const s2ft_statistics *stats) {
  nlohmann::ordered_json j;
  j["strategy"] = strategy_name(o.strategy);
  if (o.strategy == S2FT_STRATEGY_PRINCIPAL && stats != nullptr) {
    const int64_t rank = common_principal_rank(*stats, o.targets);
    if (rank > 0) j["principal_rank"] = rank;
  }
  j["order"] = o.order == S2FT_ORDER_LARGEST ? "largest" : "smallest";
  j["allocation"] = o.allocation == S2FT_ALLOCATE_PER_LAYER ? "per_layer" : "global";
  j["head_granularity"] = head_granularity_name(o.head_granularity);
  j["seed"] = o.seed;
  nlohmann::ordered_json b = nlohmann::ordered_json::object();
  for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
    if ((o.targets & S2FT_TARGET_BIT(t)) == 0) continue;
    if (o.count[t] != 0)
      b[target_name(t)] = {{"count", o.count[t]}};
    else
      b[target_name(t)] = {{"ratio", o.ratio[t]}};
  }
  j["budget"] = b;
  return j.dump();
}

}  // namespace
}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_select_options_init(s2ft_select_options *opts, uint32_t version) {
  return s2ft::guard("s2ft_select_options_init", [&] {
    s2ft::require_not_null(opts, "opts");
    s2ft::check_init_version(version, S2FT_SELECT_OPTIONS_VERSION);
    *opts = s2ft_select_options{};
    opts->version = version;
    opts->targets = S2FT_TARGET_BIT(S2FT_TARGET_O) | S2FT_TARGET_BIT(S2FT_TARGET_DOWN);
    opts->strategy = S2FT_STRATEGY_RANDOM;
    opts->order = S2FT_ORDER_LARGEST;
    opts->allocation = S2FT_ALLOCATE_PER_LAYER;
    opts->head_granularity = S2FT_HEADS_BY_GROUP;
    opts->seed = 0;
    opts->ratio[S2FT_TARGET_O] = 0.05;
    opts->ratio[S2FT_TARGET_DOWN] = 0.02;
  });
}

S2FT_API s2ft_status s2ft_select(s2ft_context *ctx, const s2ft_model_shape *shape, const s2ft_select_options *opts,
                                 const s2ft_statistics *stats, s2ft_selection **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_select", [&] {
    s2ft::require_not_null(out, "out");
    s2ft::require_context(ctx);
    s2ft::check_model_shape(shape, "shape");
    s2ft::require_not_null(opts, "opts");
    s2ft::require_live_or_null(stats, "stats");
    const s2ft_select_options &o = *opts;
    s2ft::check_options(o);
    const int32_t L = shape->n_layers;
    const bool global = o.allocation == S2FT_ALLOCATE_GLOBAL;

    int64_t k[S2FT_NUM_TARGETS] = {0, 0, 0, 0};
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t)
      if (o.targets & S2FT_TARGET_BIT(t)) {
        const int64_t per_layer = s2ft::selection_units(*shape, t, o.head_granularity);
        k[t] = s2ft::budget(o, t, global ? per_layer * L : per_layer);
      }

    if (o.strategy != S2FT_STRATEGY_RANDOM) {
      if (stats == nullptr)
        s2ft::fail_arg(std::string("stats is NULL but the ") + s2ft::strategy_name(o.strategy) +
                       " strategy scores units from statistics");
      const s2ft_model_shape &ss = stats->shape;
      if (ss.n_layers != shape->n_layers || ss.d_model != shape->d_model || ss.n_heads != shape->n_heads ||
          ss.n_kv_heads != shape->n_kv_heads || ss.head_dim != shape->head_dim || ss.d_ff != shape->d_ff)
        s2ft::fail_arg("stats was created for a different model shape than shape");
    }

    std::vector<s2ft::LayerUnits> layers(static_cast<size_t>(L));
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      if ((o.targets & S2FT_TARGET_BIT(t)) == 0) continue;
      std::vector<s2ft::Candidate> pool;
      for (int32_t l = 0; l < L; ++l) {
        const std::vector<double> sc = s2ft::scores(*shape, o, stats, l, t);
        s2ft::Rng keys(s2ft::stream_seed(o.seed, l, t, 1));
        std::vector<s2ft::Candidate> c;
        c.reserve(sc.size());
        for (size_t u = 0; u < sc.size(); ++u) c.push_back({sc[u], keys.next(), l, static_cast<int64_t>(u)});
        if (global) {
          pool.insert(pool.end(), c.begin(), c.end());
          continue;
        }
        s2ft::take_best(c, k[t], o.order == S2FT_ORDER_LARGEST);
        for (const auto &x : c) layers[static_cast<size_t>(l)].units[static_cast<size_t>(t)].push_back(x.unit);
      }
      if (global) {
        s2ft::take_best(pool, k[t], o.order == S2FT_ORDER_LARGEST);
        for (const auto &x : pool) layers[static_cast<size_t>(x.layer)].units[static_cast<size_t>(t)].push_back(x.unit);
      }
      for (auto &lu : layers) std::sort(lu.units[static_cast<size_t>(t)].begin(), lu.units[static_cast<size_t>(t)].end());
    }
    *out = s2ft::make_selection(*shape, o.head_granularity, std::move(layers), s2ft::options_json(o, stats)).release();
  });
}

}  // extern "C"
