#include "sorsa_method.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>

#include "s2ft_check.hpp"

namespace ft {

const std::vector<Proj> kSorsaTargets = {Proj::Q, Proj::K, Proj::V, Proj::O, Proj::GATE, Proj::UP, Proj::DOWN};

SorsaFineTuning::SorsaFineTuning(s2ft_context *ctx, const OptimizerSettings &opt, const SorsaSettings &settings)
    : FineTuning(ctx, opt), settings_(settings) {
  if (settings_.rank < 1) throw std::invalid_argument("SORSA: the rank must be >= 1");
  if (!(settings_.gamma >= 0.0) || !std::isfinite(settings_.gamma))
    throw std::invalid_argument("SORSA: gamma must be finite and >= 0");
}

void SorsaFineTuning::attach(LlamaModel<float> &model) {
  const LlamaConfig &c = model.config();
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (Proj p : kSorsaTargets) {
      const int64_t out = c.out_features(p), in = c.in_features(p), r = settings_.rank;
      auto proj = std::make_unique<SorsaProjection>(ctx_, model.weight(l, p).data(), out, in, r);
      // Each factor whole, s as [1, r] (the header's way to register them).
      add_dense(proj->u.data(), proj->grad_u.data(), out, r);
      add_dense(proj->s.data(), proj->grad_s.data(), 1, r);
      add_dense(proj->vt.data(), proj->grad_vt.data(), r, in);
      projections_.push_back(proj.get());
      model.set_projection(l, p, std::move(proj));
    }
}

double SorsaFineTuning::regularize(double lr) {
  const double rate = settings_.gamma * lr;
  const uint32_t flags = settings_.unsquared ? S2FT_SORSA_UNSQUARED : 0u;
  double total = 0.0;
  for (SorsaProjection *p : projections_) {
    s2ft_tensor u = p->u_tensor(), vt = p->vt_tensor();
    double value = 0.0;
    s2ft_check(s2ft_sorsa_regularizer_step(ctx_, &u, &vt, rate, &value, flags), "s2ft_sorsa_regularizer_step");
    total += value;
  }
  return total;
}

double SorsaFineTuning::max_orthonormality_error() const {
  double worst = 0.0;
  for (const SorsaProjection *p : projections_) {
    const s2ft_tensor u = p->u_tensor(), vt = p->vt_tensor();
    double value = 0.0;
    s2ft_check(s2ft_sorsa_regularizer(ctx_, &u, &vt, 1.0, &value, nullptr, nullptr, S2FT_SORSA_UNSQUARED),
               "s2ft_sorsa_regularizer");
    worst = std::max(worst, value);
  }
  return worst;
}

void SorsaFineTuning::before_step(int64_t steps, double lr) {
  (void)steps;
  regularize(lr);
}

}  // namespace ft
