#include "methods.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace ft {

std::unique_ptr<FineTuning> make_method(s2ft_context *ctx, const MethodSpec &spec,
                                        const std::vector<Batch> &calibration, uint64_t seed) {
  const OptimizerSettings opt;
  switch (spec.kind) {
    case MethodKind::Full:
      return std::make_unique<FullFineTuning>(ctx, opt);
    case MethodKind::Lora:
      // alpha = 2 r: the update's scale does not change with the rank.
      return std::make_unique<LoraFineTuning>(ctx, opt, spec.lora_rank, 2.0 * static_cast<double>(spec.lora_rank), seed,
                                              spec.lora_targets);
    case MethodKind::S2ft: {
      S2ftSettings s = spec.s2ft;
      s.seed = seed;
      return std::make_unique<S2ftFineTuning>(ctx, opt, s, calibration);
    }
    case MethodKind::Sparse: {
      SparseSettings s = spec.sparse;
      s.seed = seed;
      return std::make_unique<SparseFineTuning>(ctx, opt, s);
    }
    case MethodKind::Sorsa:
      // The split is the SVD of each weight: nothing to seed.
      return std::make_unique<SorsaFineTuning>(ctx, opt, spec.sorsa);
  }
  throw std::invalid_argument("make_method: unknown method kind");
}

int64_t s2ft_parameter_count(const LlamaConfig &c, const S2ftSettings &s) {
  int64_t params = 0;
  for (int t = 0; t < S2FT_NUM_TARGETS; ++t) {
    if (!(s.targets & S2FT_TARGET_BIT(t))) continue;
    // A unit of O is a KV group of query heads (columns), of V one KV head
    // (rows), of DOWN and UP one channel.
    const int64_t unit = t == S2FT_TARGET_O ? (c.n_heads / c.n_kv_heads) * c.head_dim * c.d_model
                         : t == S2FT_TARGET_V ? c.head_dim * c.d_model
                                              : c.d_model;
    params += s.count[t] * unit * c.n_layers;
  }
  return params;
}

int64_t lora_parameters_per_rank(const LlamaConfig &c, const std::vector<Proj> &targets) {
  // A [r, in] and B [out, r] per adapted projection.
  int64_t per_layer = 0;
  for (Proj p : targets) per_layer += c.in_features(p) + c.out_features(p);
  return per_layer * c.n_layers;
}

int64_t lora_rank_matching(const LlamaConfig &c, const std::vector<Proj> &targets, int64_t params) {
  const int64_t per_rank = lora_parameters_per_rank(c, targets);
  if (per_rank <= 0) throw std::invalid_argument("lora_rank_matching: no target projections");
  return std::max<int64_t>(1, std::llround(static_cast<double>(params) / static_cast<double>(per_rank)));
}

int64_t sorsa_parameters_per_rank(const LlamaConfig &c) {
  int64_t per_layer = 0;
  for (Proj p : kSorsaTargets) per_layer += c.out_features(p) + c.in_features(p) + 1;
  return per_layer * c.n_layers;
}

int64_t sorsa_rank_matching(const LlamaConfig &c, int64_t params) {
  int64_t most = INT64_MAX;
  for (Proj p : kSorsaTargets) most = std::min(most, std::min(c.out_features(p), c.in_features(p)));
  const double per_rank = static_cast<double>(sorsa_parameters_per_rank(c));
  return std::clamp<int64_t>(std::llround(static_cast<double>(params) / per_rank), 1, most);
}

std::vector<double> rate_grid(double center, int below, int above) {
  if (!(center > 0.0) || below < 0 || above < 0) throw std::invalid_argument("rate_grid: bad arguments");
  std::vector<double> r;
  for (int k = -below; k <= above; ++k) r.push_back(std::ldexp(center, k));
  return r;
}

namespace {

std::string strategy_tag(const S2ftSettings &s) {
  const char *name = s.strategy == S2FT_STRATEGY_RANDOM       ? "random"
                     : s.strategy == S2FT_STRATEGY_WEIGHT     ? "weight"
                     : s.strategy == S2FT_STRATEGY_ACTIVATION ? "act"
                     : s.strategy == S2FT_STRATEGY_WEIGHT_ACT ? "wxa"
                                                              : "scored";
  if (s.strategy == S2FT_STRATEGY_RANDOM) return name;
  return std::string(name) + (s.order == S2FT_ORDER_SMALLEST ? "-min" : "-max");
}

}  // namespace

std::vector<MethodSpec> standard_methods(const LlamaConfig &c, const StandardMethods &o) {
  S2ftSettings small = o.s2ft, large = o.s2ft;
  large.count[S2FT_TARGET_O] = std::min(2 * small.count[S2FT_TARGET_O], c.n_kv_heads);
  large.count[S2FT_TARGET_V] = std::min(2 * small.count[S2FT_TARGET_V], c.n_kv_heads);
  large.count[S2FT_TARGET_DOWN] = std::min(o.large_factor * small.count[S2FT_TARGET_DOWN], c.d_ff);
  large.count[S2FT_TARGET_UP] = std::min(o.large_factor * small.count[S2FT_TARGET_UP], c.d_ff);
  const int64_t matched = s2ft_parameter_count(c, small);

  auto rates = [&](const std::string &name, const std::vector<double> &grid) {
    if (grid.empty()) throw std::invalid_argument("standard_methods: an empty learning-rate grid");
    const auto named = o.best.find(name);
    const double best = named != o.best.end() ? named->second : grid[grid.size() / 2];
    std::vector<double> v = o.two_rates ? std::vector<double>{best, 2 * best} : o.grid ? grid : std::vector<double>{best};
    for (double &x : v) x *= o.lr_scale;
    return v;
  };
  std::vector<MethodSpec> m;
  MethodSpec full;
  full.name = "full";
  full.kind = MethodKind::Full;
  full.lrs = rates(full.name, o.full_grid);
  m.push_back(full);
  const std::vector<Proj> od = {Proj::O, Proj::DOWN};
  for (const auto &[name, targets] : {std::make_pair(std::string("lora-qkvud"), LoraFineTuning::kPaperTargets),
                                      std::make_pair(std::string("lora-od"), od)}) {
    MethodSpec l;
    l.name = name;
    l.kind = MethodKind::Lora;
    l.lora_targets = targets;
    l.lora_rank = lora_rank_matching(c, targets, matched);
    l.lrs = rates(l.name, o.lora_grid);
    m.push_back(l);
  }
  for (const auto &[budget, settings] :
       {std::make_pair(std::string("small"), small), std::make_pair(std::string("large"), large)})
    for (bool random : {true, false}) {
      MethodSpec x;
      x.kind = MethodKind::S2ft;
      x.s2ft = settings;
      if (random) x.s2ft.strategy = S2FT_STRATEGY_RANDOM;
      x.name = "s2ft-" + strategy_tag(x.s2ft) + "-" + budget;
      x.lrs = rates(x.name, o.s2ft_grid);
      if (std::none_of(m.begin(), m.end(), [&](const MethodSpec &u) { return u.name == x.name; })) m.push_back(x);
    }
  for (SparseKind kind : {SparseKind::Lift, SparseKind::SpielAg, SparseKind::SpielMa}) {
    MethodSpec x;
    x.kind = MethodKind::Sparse;
    x.sparse.kind = kind;
    x.sparse.budget = matched;
    x.sparse.total_steps = o.run_steps;
    x.name = sparse_kind_name(kind);
    const std::vector<double> &adamw = o.sparse_grid.empty() ? o.lora_grid : o.sparse_grid;
    x.lrs = rates(x.name, kind == SparseKind::SpielMa && !o.sm3_grid.empty() ? o.sm3_grid : adamw);
    m.push_back(x);
  }
  MethodSpec sorsa;
  sorsa.name = "sorsa";
  sorsa.kind = MethodKind::Sorsa;
  sorsa.sorsa.rank = sorsa_rank_matching(c, matched);
  sorsa.lrs = rates(sorsa.name, o.lora_grid);  // a low-rank method: LoRA's family grid
  m.push_back(sorsa);
  return m;
}

std::vector<MethodSpec> pick_methods(const std::vector<MethodSpec> &all, const std::vector<std::string> &names) {
  if (names.empty()) return all;
  std::vector<MethodSpec> chosen;
  for (const std::string &n : names) {
    auto it = std::find_if(all.begin(), all.end(), [&](const MethodSpec &m) { return m.name == n; });
    if (it == all.end()) {
      std::string known;
      for (const MethodSpec &m : all) known += (known.empty() ? "" : ", ") + m.name;
      throw std::invalid_argument("unknown method '" + n + "' (known: " + known + ")");
    }
    chosen.push_back(*it);
  }
  return chosen;
}

}  // namespace ft
