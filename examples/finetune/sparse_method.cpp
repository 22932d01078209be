#include "sparse_method.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "rng.hpp"
#include "s2ft_check.hpp"

namespace ft {

struct SpielDeleter {
  void operator()(s2ft_spiel *p) const { s2ft_spiel_destroy(p); }
};

struct SparseFineTuning::Trained {
  SparseProjection *proj = nullptr;
  int64_t index = 0;                                 // the optimizer's parameter
  std::unique_ptr<s2ft_spiel, SpielDeleter> spiel;  // SpIEL's schedule of the parameter
};

std::vector<int64_t> sparse_counts(const LlamaConfig &c, const std::vector<Proj> &targets, int64_t budget) {
  if (targets.empty()) throw std::invalid_argument("sparse_counts: no target projections");
  int64_t span = 0;  // sum of out + in over every trained weight
  for (Proj p : targets) span += (c.out_features(p) + c.in_features(p)) * c.n_layers;
  std::vector<int64_t> counts;
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (Proj p : targets) {
      const int64_t out = c.out_features(p), in = c.in_features(p);
      const double share = static_cast<double>(budget) * static_cast<double>(out + in) / static_cast<double>(span);
      counts.push_back(std::clamp<int64_t>(std::llround(share), 1, out * in));
    }
  return counts;
}

const char *sparse_kind_name(SparseKind k) {
  switch (k) {
    case SparseKind::Lift:
      return "lift";
    case SparseKind::SpielAg:
      return "spiel-ag";
    case SparseKind::SpielMa:
      return "spiel-ma";
  }
  return "sparse";
}

namespace {

// SpIEL-MA regrows by the SM3 optimizer's row and column accumulators, as
// its reference trains with SM3; the others train with AdamW.
OptimizerSettings optimizer_for(OptimizerSettings o, SparseKind kind) {
  if (kind == SparseKind::SpielMa) o.kind = S2FT_OPTIMIZER_SM3;
  return o;
}

}  // namespace

SparseFineTuning::SparseFineTuning(s2ft_context *ctx, const OptimizerSettings &opt, const SparseSettings &settings)
    : FineTuning(ctx, optimizer_for(opt, settings.kind)), settings_(settings) {
  if (settings_.budget < 1) throw std::invalid_argument("SparseFineTuning: the budget must be >= 1");
}

SparseFineTuning::~SparseFineTuning() = default;

namespace {

// LIFT's principal weights of w: the k entries of largest |W_r|.
std::vector<int64_t> lift_indices(s2ft_context *ctx, const s2ft_tensor &w, int32_t rank, int64_t k) {
  s2ft_lift_options o;
  s2ft_check(s2ft_lift_options_init(&o, S2FT_LIFT_OPTIONS_VERSION), "s2ft_lift_options_init");
  o.rank = std::min<int64_t>(rank, std::min(w.shape[0], w.shape[1]));
  o.count = k;
  std::vector<int64_t> idx(static_cast<size_t>(k));
  int64_t got = 0;
  s2ft_check(s2ft_lift_select(ctx, &w, &o, idx.data(), k, &got), "s2ft_lift_select");
  idx.resize(static_cast<size_t>(got));
  return idx;
}

// k distinct flat indices of [out, in], uniformly at random, ascending.
std::vector<int64_t> random_indices(int64_t out, int64_t in, int64_t k, Rng &rng) {
  std::vector<int64_t> all(static_cast<size_t>(out * in));
  std::iota(all.begin(), all.end(), 0);
  for (int64_t i = 0; i < k; ++i) {  // a partial Fisher-Yates shuffle
    const int64_t j = i + static_cast<int64_t>(rng.next() % static_cast<uint64_t>(out * in - i));
    std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(j)]);
  }
  all.resize(static_cast<size_t>(k));
  std::sort(all.begin(), all.end());
  return all;
}

}  // namespace

void SparseFineTuning::attach(LlamaModel<float> &model) {
  const LlamaConfig &c = model.config();
  const std::vector<int64_t> counts = sparse_counts(c, settings_.targets, settings_.budget);
  Rng rng(settings_.seed);
  size_t at = 0;
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (Proj p : settings_.targets) {
      const int64_t out = c.out_features(p), in = c.in_features(p), k = counts[at++];
      float *w = model.weight(l, p).data();
      const std::vector<int64_t> idx = settings_.kind == SparseKind::Lift
                                           ? lift_indices(ctx_, f32_tensor(w, out, in), settings_.lift_rank, k)
                                           : random_indices(out, in, k, rng);
      auto proj = std::make_unique<SparseProjection>(ctx_, w, out, in, idx);
      Trained t;
      t.proj = proj.get();
      t.index = add_sparse(w, out, in, proj->set(), proj->grad_tensor());
      if (settings_.kind != SparseKind::Lift) {
        t.spiel.reset(make_spiel(t.index, proj->weight_tensor()));
        s2ft_spiel *spiel = t.spiel.get();
        s2ft_context *ctx = ctx_;
        proj->observer = [spiel, ctx](const s2ft_tensor &x, const s2ft_tensor &dy) {
          s2ft_check(s2ft_spiel_observe(spiel, ctx, &x, &dy), "s2ft_spiel_observe");
        };
      }
      trained_.push_back(std::move(t));
      projections_.push_back(proj.get());
      model.set_projection(l, p, std::move(proj));
    }
}

void SparseFineTuning::after_step(int64_t steps) {
  if (settings_.kind == SparseKind::Lift) {
    if (settings_.refresh_every < 1 || steps % settings_.refresh_every != 0) return;
    ++stats_.refreshes;
    for (Trained &t : trained_) {
      const s2ft_tensor w = t.proj->weight_tensor();
      s2ft_lift_options o;
      s2ft_check(s2ft_lift_options_init(&o, S2FT_LIFT_OPTIONS_VERSION), "s2ft_lift_options_init");
      o.rank = std::min<int64_t>(settings_.lift_rank, std::min(w.shape[0], w.shape[1]));
      o.count = t.proj->count();
      s2ft_sparse_set *set = nullptr;
      int64_t kept = 0;
      s2ft_check(s2ft_lift_refresh(ctx_, optimizer(), t.index, &w, &o, &set, &kept), "s2ft_lift_refresh");
      stats_.replaced += t.proj->count() - kept;
      t.proj->reset(SparseSetPtr(set));
      set_grad(t.index, t.proj->grad_tensor());
    }
    return;
  }
  // SpIEL: the schedule counts the step and, at a reselection, drops and
  // regrows entries and moves the optimizer's parameter itself.
  bool any = false;
  for (Trained &t : trained_) {
    s2ft_tensor w = t.proj->weight_tensor();
    int32_t reselected = 0;
    s2ft_check(s2ft_spiel_step(t.spiel.get(), ctx_, &w, &reselected), "s2ft_spiel_step");
    if (!reselected) continue;
    any = true;
    s2ft_spiel_stats st;
    st.version = S2FT_SPIEL_STATS_VERSION;
    s2ft_check(s2ft_spiel_stats_get(t.spiel.get(), &st), "s2ft_spiel_stats_get");
    stats_.replaced += st.last_regrown;
    s2ft_sparse_set *set = nullptr;
    s2ft_check(s2ft_spiel_current_set(t.spiel.get(), ctx_, &set), "s2ft_spiel_current_set");
    t.proj->reset(SparseSetPtr(set));
    set_grad(t.index, t.proj->grad_tensor());
  }
  if (any) ++stats_.refreshes;
}

s2ft_spiel *SparseFineTuning::make_spiel(int64_t index, const s2ft_tensor &w) const {
  if (settings_.total_steps < 1) throw std::invalid_argument("SpIEL: total_steps must be set");
  s2ft_spiel_options o;
  s2ft_check(s2ft_spiel_options_init(&o, S2FT_SPIEL_OPTIONS_VERSION), "s2ft_spiel_options_init");
  o.regrow = settings_.kind == SparseKind::SpielAg ? S2FT_SPIEL_AG : S2FT_SPIEL_MA;
  o.reselect_interval = settings_.reselect_every;
  o.accumulation_steps = std::min(settings_.accumulate, settings_.reselect_every);
  o.total_steps = settings_.total_steps;
  o.initial_rate = settings_.replacement;
  s2ft_spiel *spiel = nullptr;
  s2ft_check(s2ft_spiel_create(ctx_, optimizer(), index, &w, &o, &spiel), "s2ft_spiel_create");
  return spiel;
}

}  // namespace ft
