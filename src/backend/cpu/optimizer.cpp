// AdamW, SGD and SM3 on the CPU. The rules of AdamW and SGD are PyTorch's
// (torch.optim.AdamW, torch.optim.SGD, clip_grad_norm_); SM3 is SM3-II
// (Anil et al., 2019; the formulas are in include/s2ft/s2ft.h). All are
// computed per element in double from f32 state, so results are
// deterministic and a saved state resumes bit-exactly; the CUDA kernels
// apply the same arithmetic. A parameter is a slice ([rows, cols] of weight
// lines) or a sparse parameter (entries at flat indices, [1, count]); the
// update loops see both through OptimizerParam's element mapping.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "train/optimizer.hpp"

namespace s2ft {
namespace cpu {
namespace {

using backend::StateTensor;

// The optimizer's step counter.
struct OptimizerState {
  int64_t steps = 0;
};

// One parameter's state: f32 tensors indexed by StateTensor (empty when
// the options do not use them): m, v, momentum, master and age have the
// parameter's shape (compact row-major), row_acc and col_acc one value per
// accumulator row and column.
struct ParamState {
  std::vector<float> t[backend::kStateTensors];
  std::vector<float> &operator[](StateTensor which) { return t[static_cast<int>(which)]; }
  const std::vector<float> &operator[](StateTensor which) const { return t[static_cast<int>(which)]; }
};

ParamState &state_of(const OptimizerParam &p) { return *static_cast<ParamState *>(p.state.get()); }

// Global L2 norm over all gradients, in double. Non-finite entries make it
// non-finite; `bad` receives the first gradient responsible.
double global_norm(const std::vector<Matrix> &grads, int64_t *bad) {
  double total = 0.0;
  *bad = -1;
  for (size_t i = 0; i < grads.size(); ++i) {
    const Matrix &g = grads[i];
    double sum = 0.0;
    for (int64_t r = 0; r < g.rows; ++r)
      for (int64_t c = 0; c < g.cols; ++c) {
        const double x = g.get(r, c);
        sum += x * x;
      }
    if (!std::isfinite(sum) && *bad < 0) *bad = static_cast<int64_t>(i);
    total += sum;
  }
  return std::sqrt(total);
}

// Reads the f32 value of parameter element e = i * cols + j (master or weight).
double load_param(const OptimizerParam &p, const ParamState &s, int64_t i, int64_t j) {
  return p.has_master() ? s[StateTensor::master][static_cast<size_t>(i * p.cols + j)] : p.get(i, j);
}

void store_param(const OptimizerParam &p, ParamState &s, int64_t i, int64_t j, double x) {
  const float f = static_cast<float>(x);
  if (p.has_master()) s[StateTensor::master][static_cast<size_t>(i * p.cols + j)] = f;
  p.set(i, j, f);  // rounds to the weight's dtype
}

// AdamW's bias corrections for step t: lr / (1 - b1^t) and sqrt(1 - b2^t).
struct BiasTerms {
  double step_size = 0.0, bc2_sqrt = 0.0;
  BiasTerms(const s2ft_optimizer_options &o, double lr, int64_t t)
      : step_size(lr / (1.0 - std::pow(o.beta1, static_cast<double>(t)))),
        bc2_sqrt(std::sqrt(1.0 - std::pow(o.beta2, static_cast<double>(t)))) {}
};

// AdamW (PyTorch order), step t >= 1, g already clipped:
//   p <- p * (1 - lr*wd)
//   m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
//   p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// With ages (sparse parameters under age_bias_correction) each entry uses
// t = age + 1 instead, and its age becomes t.
void adamw_step(const OptimizerParam &p, ParamState &s, const Matrix &grad, const s2ft_optimizer_options &o,
                double lr, double scale, int64_t t) {
  const double b1 = o.beta1, b2 = o.beta2;
  const BiasTerms global(o, lr, t);
  const double decay = 1.0 - lr * o.weight_decay;
  std::vector<float> &m = s[StateTensor::m], &v = s[StateTensor::v], &age = s[StateTensor::age];
  const bool aged = !age.empty();
  int64_t cached_t = t;  // entries mostly share an age: reuse its terms
  BiasTerms terms = global;
  for (int64_t i = 0; i < p.rows; ++i)
    for (int64_t j = 0; j < p.cols; ++j) {
      const size_t e = static_cast<size_t>(i * p.cols + j);
      if (aged) {
        const int64_t te = static_cast<int64_t>(age[e]) + 1;
        if (te != cached_t) {
          terms = BiasTerms(o, lr, te);
          cached_t = te;
        }
        age[e] = static_cast<float>(te);
      }
      const double g = static_cast<double>(grad.get(i, j)) * scale;
      double x = load_param(p, s, i, j) * decay;
      const float mf = static_cast<float>(b1 * m[e] + (1.0 - b1) * g);
      const float vf = static_cast<float>(b2 * v[e] + (1.0 - b2) * g * g);
      m[e] = mf;
      v[e] = vf;
      x -= terms.step_size * mf / (std::sqrt(static_cast<double>(vf)) / terms.bc2_sqrt + o.eps);
      store_param(p, s, i, j, x);
    }
}

// SGD (PyTorch, dampening 0), g already clipped:
//   g <- g + wd p
//   buf <- g on the first step, else momentum * buf + g   (momentum > 0)
//   g <- nesterov ? g + momentum * buf : buf
//   p <- p - lr g
void sgd_step(const OptimizerParam &p, ParamState &s, const Matrix &grad, const s2ft_optimizer_options &o,
              double lr, double scale, bool first_step) {
  const bool with_momentum = uses_momentum(o);
  std::vector<float> &mom = s[StateTensor::momentum];
  for (int64_t i = 0; i < p.rows; ++i)
    for (int64_t j = 0; j < p.cols; ++j) {
      const size_t e = static_cast<size_t>(i * p.cols + j);
      double x = load_param(p, s, i, j);
      double g = static_cast<double>(grad.get(i, j)) * scale + o.weight_decay * x;
      if (with_momentum) {
        const float buf = static_cast<float>(first_step ? g : o.momentum * mom[e] + g);
        mom[e] = buf;
        g = o.nesterov != 0 ? g + o.momentum * buf : buf;
      }
      x -= lr * g;
      store_param(p, s, i, j, x);
    }
}

// SM3-II, g already clipped; R and C the row and column accumulators of
// the parameter's matrix (the whole weight's for a sparse parameter):
//   nu = min(R[r], C[c]) + g^2
//   u  = g / (sqrt(nu) + eps)
//   u  = buf = momentum * buf + (1 - momentum) * u      (momentum > 0)
//   p  = p * (1 - lr*wd) - lr u
// then R[r] = max of f32(nu) over the step's elements in row r, C[c] the
// same over column c; rows and columns without elements keep their value.
void sm3_step(const OptimizerParam &p, ParamState &s, const Matrix &grad, const s2ft_optimizer_options &o,
              double lr, double scale) {
  const bool with_momentum = uses_momentum(o);
  const double decay = 1.0 - lr * o.weight_decay;
  std::vector<float> &R = s[StateTensor::row_acc], &C = s[StateTensor::col_acc], &mom = s[StateTensor::momentum];
  std::vector<float> newR(R.size(), -1.0f), newC(C.size(), -1.0f);  // -1: no element this step
  for (int64_t i = 0; i < p.rows; ++i)
    for (int64_t j = 0; j < p.cols; ++j) {
      const size_t e = static_cast<size_t>(i * p.cols + j);
      const size_t r = static_cast<size_t>(p.acc_row(i, j)), c = static_cast<size_t>(p.acc_col(i, j));
      const double g = static_cast<double>(grad.get(i, j)) * scale;
      const double nu = static_cast<double>(std::min(R[r], C[c])) + g * g;
      double u = g / (std::sqrt(nu) + o.eps);
      if (with_momentum) {
        const float buf = static_cast<float>(o.momentum * mom[e] + (1.0 - o.momentum) * u);
        mom[e] = buf;
        u = buf;
      }
      double x = load_param(p, s, i, j) * decay;
      x -= lr * u;
      store_param(p, s, i, j, x);
      const float nuf = static_cast<float>(nu);
      newR[r] = std::max(newR[r], nuf);
      newC[c] = std::max(newC[c], nuf);
    }
  for (size_t r = 0; r < R.size(); ++r)
    if (newR[r] >= 0.0f) R[r] = newR[r];
  for (size_t c = 0; c < C.size(); ++c)
    if (newC[c] >= 0.0f) C[c] = newC[c];
}

// Fresh state for p: zeros, the master from the weight.
std::shared_ptr<ParamState> new_state(const OptimizerParam &p, const s2ft_optimizer_options &o) {
  auto s = std::make_shared<ParamState>();
  for (int k = 0; k < backend::kStateTensors; ++k) {
    const StateTensor which = static_cast<StateTensor>(k);
    if (has_state(o, p, which)) (*s)[which].assign(p.state_size(which), 0.0f);
  }
  if (p.has_master()) {
    std::vector<float> &master = (*s)[StateTensor::master];
    for (int64_t i = 0; i < p.rows; ++i)
      for (int64_t j = 0; j < p.cols; ++j) master[static_cast<size_t>(i * p.cols + j)] = p.get(i, j);
  }
  return s;
}

}  // namespace

void optimizer_create(backend::Instance *, backend::Object *out) { *out = std::make_shared<OptimizerState>(); }

void optimizer_add_param(backend::Instance *, const OptimizerParam &p, const s2ft_optimizer_options &o,
                         backend::Object *out) {
  *out = new_state(p, o);
}

// The CPU always knows the norm, so it always reports (whatever `report`).
void optimizer_step(backend::Instance *, void *state, const std::vector<OptimizerParam> &params,
                    const std::vector<Matrix> &grads, const s2ft_optimizer_options &o, double lr,
                    int64_t assumed_steps, bool, backend::StepReport *out) {
  backend::StepReport &r = *out;
  r.known = true;
  r.norm = global_norm(grads, &r.bad);
  r.steps = assumed_steps;
  r.applied = std::isfinite(r.norm);
  if (!r.applied) return;
  // clip_grad_norm_: scale by min(1, max_norm / (norm + 1e-6)).
  const double scale = o.max_grad_norm > 0.0 ? std::min(1.0, o.max_grad_norm / (r.norm + 1e-6)) : 1.0;
  const int64_t t = assumed_steps + 1;
  for (size_t i = 0; i < params.size(); ++i) {
    ParamState &s = state_of(params[i]);
    switch (o.kind) {
      case S2FT_OPTIMIZER_ADAMW: adamw_step(params[i], s, grads[i], o, lr, scale, t); break;
      case S2FT_OPTIMIZER_SGD: sgd_step(params[i], s, grads[i], o, lr, scale, assumed_steps == 0); break;
      default: sm3_step(params[i], s, grads[i], o, lr, scale); break;
    }
  }
  static_cast<OptimizerState *>(state)->steps = t;
  r.steps = t;
}

void optimizer_steps(backend::Instance *, const void *state, int64_t *out) {
  *out = static_cast<const OptimizerState *>(state)->steps;
}

void optimizer_set_steps(backend::Instance *, void *state, int64_t steps) {
  static_cast<OptimizerState *>(state)->steps = steps;
}

void optimizer_reindex(backend::Instance *, const OptimizerParam &prev, const OptimizerParam &next,
                       const std::vector<int64_t> &source, const s2ft_optimizer_options &o, backend::Object *out) {
  std::shared_ptr<ParamState> s = new_state(next, o);
  const ParamState &old = state_of(prev);
  for (StateTensor which : {StateTensor::m, StateTensor::v, StateTensor::momentum, StateTensor::age,
                            StateTensor::master}) {
    std::vector<float> &to = (*s)[which];
    const std::vector<float> &from = old[which];
    if (to.empty()) continue;
    for (size_t e = 0; e < to.size(); ++e)
      if (source[e] >= 0) to[e] = from[static_cast<size_t>(source[e])];
  }
  (*s)[StateTensor::row_acc] = old[StateTensor::row_acc];
  (*s)[StateTensor::col_acc] = old[StateTensor::col_acc];
  *out = std::move(s);
}

void optimizer_read_state(backend::Instance *, const OptimizerParam &p, StateTensor which, float *host,
                          size_t count) {
  const std::vector<float> &t = state_of(p)[which];
  std::copy_n(t.begin(), std::min(count, t.size()), host);
}

void optimizer_write_state(backend::Instance *, const OptimizerParam &p, StateTensor which, const float *host,
                           size_t count) {
  std::vector<float> &t = state_of(p)[which];
  std::copy_n(host, std::min(count, t.size()), t.begin());
}

void optimizer_write_master(backend::Instance *, const OptimizerParam &p) {
  if (!p.has_master()) return;
  const std::vector<float> &master = state_of(p)[StateTensor::master];
  for (int64_t i = 0; i < p.rows; ++i)
    for (int64_t j = 0; j < p.cols; ++j) p.set(i, j, master[static_cast<size_t>(i * p.cols + j)]);
}

}  // namespace cpu
}  // namespace s2ft
