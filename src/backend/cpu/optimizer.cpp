// AdamW and SGD on the CPU. The rules are PyTorch's (torch.optim.AdamW,
// torch.optim.SGD, clip_grad_norm_), computed per element in double from f32
// state, so results are deterministic and a saved state resumes
// bit-exactly; the CUDA kernels apply the same arithmetic.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "train/optimizer.hpp"

namespace s2ft {
namespace cpu {
namespace {

// The optimizer's step counter.
struct OptimizerState {
  int64_t steps = 0;
};

// One parameter's state: compact row-major f32 [rows, cols] tensors (empty
// when the options do not use them).
struct ParamState {
  std::vector<float> m, v;      // AdamW first and second moments
  std::vector<float> momentum;  // SGD momentum buffer (momentum > 0 only)
  std::vector<float> master;    // f32 master slice for f16/bf16 weights

  std::vector<float> &tensor(backend::StateTensor which) {
    switch (which) {
      case backend::StateTensor::m: return m;
      case backend::StateTensor::v: return v;
      case backend::StateTensor::momentum: return momentum;
      default: return master;
    }
  }
};

ParamState &state_of(const OptimizerParam &p) { return *static_cast<ParamState *>(p.state.get()); }

// Global L2 norm over all gradient slices, in double. Non-finite entries
// make it non-finite; `bad` receives the first gradient responsible.
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

// Reads the f32 value of slice element e = i * cols + j (master or weight).
double load_param(const OptimizerParam &p, const ParamState &s, int64_t i, int64_t j) {
  return p.has_master() ? s.master[static_cast<size_t>(i * p.cols + j)] : p.get(i, j);
}

void store_param(const OptimizerParam &p, ParamState &s, int64_t i, int64_t j, double x) {
  const float f = static_cast<float>(x);
  if (p.has_master()) s.master[static_cast<size_t>(i * p.cols + j)] = f;
  p.set(i, j, f);  // rounds to the weight's dtype
}

// AdamW (PyTorch order), step t >= 1, g already clipped:
//   p <- p * (1 - lr*wd)
//   m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
//   p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
void adamw_step(const OptimizerParam &p, ParamState &s, const Matrix &grad, const s2ft_optimizer_options &o, double lr, double scale,
                int64_t t) {
  const double b1 = o.beta1, b2 = o.beta2;
  const double step_size = lr / (1.0 - std::pow(b1, static_cast<double>(t)));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(t)));
  const double decay = 1.0 - lr * o.weight_decay;
  for (int64_t i = 0; i < p.rows; ++i)
    for (int64_t j = 0; j < p.cols; ++j) {
      const size_t e = static_cast<size_t>(i * p.cols + j);
      const double g = static_cast<double>(grad.get(i, j)) * scale;
      double x = load_param(p, s, i, j) * decay;
      const float m = static_cast<float>(b1 * s.m[e] + (1.0 - b1) * g);
      const float v = static_cast<float>(b2 * s.v[e] + (1.0 - b2) * g * g);
      s.m[e] = m;
      s.v[e] = v;
      x -= step_size * m / (std::sqrt(static_cast<double>(v)) / bc2_sqrt + o.eps);
      store_param(p, s, i, j, x);
    }
}

// SGD (PyTorch, dampening 0), g already clipped:
//   g <- g + wd p
//   buf <- g on the first step, else momentum * buf + g   (momentum > 0)
//   g <- nesterov ? g + momentum * buf : buf
//   p <- p - lr g
void sgd_step(const OptimizerParam &p, ParamState &s, const Matrix &grad, const s2ft_optimizer_options &o, double lr, double scale,
              bool first_step) {
  const bool with_momentum = uses_momentum(o);
  for (int64_t i = 0; i < p.rows; ++i)
    for (int64_t j = 0; j < p.cols; ++j) {
      const size_t e = static_cast<size_t>(i * p.cols + j);
      double x = load_param(p, s, i, j);
      double g = static_cast<double>(grad.get(i, j)) * scale + o.weight_decay * x;
      if (with_momentum) {
        const float buf = static_cast<float>(first_step ? g : o.momentum * s.momentum[e] + g);
        s.momentum[e] = buf;
        g = o.nesterov != 0 ? g + o.momentum * buf : buf;
      }
      x -= lr * g;
      store_param(p, s, i, j, x);
    }
}

}  // namespace

void optimizer_create(backend::Instance *, backend::Object *out) { *out = std::make_shared<OptimizerState>(); }

void optimizer_add_param(backend::Instance *, const OptimizerParam &p, const s2ft_optimizer_options &o,
                         backend::Object *out) {
  auto s = std::make_shared<ParamState>();
  if (uses_adam_moments(o)) {
    s->m.assign(p.size(), 0.0f);
    s->v.assign(p.size(), 0.0f);
  }
  if (uses_momentum(o)) s->momentum.assign(p.size(), 0.0f);
  if (p.has_master()) {
    s->master.resize(p.size());
    for (int64_t i = 0; i < p.rows; ++i)
      for (int64_t j = 0; j < p.cols; ++j) s->master[static_cast<size_t>(i * p.cols + j)] = p.get(i, j);
  }
  *out = std::move(s);
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
    if (o.kind == S2FT_OPTIMIZER_ADAMW) adamw_step(params[i], state_of(params[i]), grads[i], o, lr, scale, t);
    else sgd_step(params[i], state_of(params[i]), grads[i], o, lr, scale, assumed_steps == 0);
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

void optimizer_read_state(backend::Instance *, const OptimizerParam &p, backend::StateTensor which, float *host,
                          size_t count) {
  const std::vector<float> &t = state_of(p).tensor(which);
  std::copy_n(t.begin(), std::min(count, t.size()), host);
}

void optimizer_write_state(backend::Instance *, const OptimizerParam &p, backend::StateTensor which,
                           const float *host, size_t count) {
  std::vector<float> &t = state_of(p).tensor(which);
  std::copy_n(host, std::min(count, t.size()), t.begin());
}

void optimizer_write_master(backend::Instance *, const OptimizerParam &p) {
  if (!p.has_master()) return;
  const ParamState &s = state_of(p);
  for (int64_t i = 0; i < p.rows; ++i)
    for (int64_t j = 0; j < p.cols; ++j) p.set(i, j, s.master[static_cast<size_t>(i * p.cols + j)]);
}

}  // namespace cpu
}  // namespace s2ft
