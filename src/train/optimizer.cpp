// AdamW and SGD on the trained slices of weights. State (moments, momentum,
// an f32 master copy for 16-bit weights) exists only for the slice, which is
// where S2FT's optimizer-memory saving comes from. The update rules are
// PyTorch's (torch.optim.AdamW, torch.optim.SGD, clip_grad_norm_), computed
// per element in double from f32 state by the context's backend, so results
// are deterministic and a saved state resumes bit-exactly.
//
// The state lives on the context's device. On a device a step synchronises
// only when the caller needs the gradient norm on the host (clipping, or
// grad_norm != NULL); otherwise a non-finite norm cannot be reported as an
// error, and the device skips the step instead: no weight or state changes
// and the step is not counted, as where the call fails.
#include "train/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <memory>
#include <string>

#include "common/error.hpp"
#include "common/options.hpp"
#include "context.hpp"
#include "train/slice.hpp"
#include "train/sparse_set.hpp"

namespace s2ft {

namespace {

std::string num(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

// Bytes of the struct a caller initialised for `version`: version 1 ends
// before the fields version 2 added.
size_t options_size(uint32_t version) {
  return version == 1 ? offsetof(s2ft_optimizer_options, age_bias_correction) : sizeof(s2ft_optimizer_options);
}

// The defaults of the current version.
s2ft_optimizer_options default_options() {
  s2ft_optimizer_options o{};
  o.version = S2FT_OPTIMIZER_OPTIONS_VERSION;
  o.kind = S2FT_OPTIMIZER_ADAMW;
  o.beta1 = 0.9;
  o.beta2 = 0.999;
  o.eps = 1e-8;
  o.weight_decay = 0.0;
  o.momentum = 0.0;
  o.nesterov = 0;
  o.max_grad_norm = 0.0;
  o.age_bias_correction = 0;
  return o;
}

// A caller's options of any known version, completed with the defaults of
// the fields its version lacks (nothing beyond its version is read).
s2ft_optimizer_options read_options(const s2ft_optimizer_options *opts) {
  uint32_t version = 0;
  std::memcpy(&version, opts, sizeof version);
  if (version < 1 || version > S2FT_OPTIMIZER_OPTIONS_VERSION)
    fail_arg("opts->version is " + std::to_string(version) + "; initialise options with s2ft_optimizer_options_init()");
  s2ft_optimizer_options o = default_options();
  std::memcpy(&o, opts, options_size(version));
  return o;
}

void check_options(const s2ft_optimizer_options &o) {
  if (o.kind != S2FT_OPTIMIZER_ADAMW && o.kind != S2FT_OPTIMIZER_SGD && o.kind != S2FT_OPTIMIZER_SM3)
    fail_arg("opts->kind must be S2FT_OPTIMIZER_ADAMW, S2FT_OPTIMIZER_SGD or S2FT_OPTIMIZER_SM3, got " +
             std::to_string(o.kind));
  if (!(o.beta1 >= 0.0 && o.beta1 < 1.0)) fail_arg("opts->beta1 must be in [0, 1), got " + num(o.beta1));
  if (!(o.beta2 >= 0.0 && o.beta2 < 1.0)) fail_arg("opts->beta2 must be in [0, 1), got " + num(o.beta2));
  auto non_negative = [](double x, const char *name) {
    if (!(std::isfinite(x) && x >= 0.0)) fail_arg(std::string("opts->") + name + " must be finite and >= 0, got " + num(x));
  };
  non_negative(o.eps, "eps");
  non_negative(o.weight_decay, "weight_decay");
  non_negative(o.momentum, "momentum");
  non_negative(o.max_grad_norm, "max_grad_norm");
  if (o.kind == S2FT_OPTIMIZER_SGD && o.nesterov != 0 && o.momentum == 0.0)
    fail_arg("opts->nesterov needs opts->momentum > 0");
  if (o.kind == S2FT_OPTIMIZER_SM3 && o.momentum >= 1.0)
    fail_arg("opts->momentum must be in [0, 1) for SM3 (an average of updates), got " + num(o.momentum));
}

// A weight whose distinct elements share memory cannot be updated element
// by element. Row-major, column-major and sliced views all pass this test.
void require_no_aliasing(const Matrix &w) {
  if (w.empty()) return;
  const bool rows_ok = w.rows <= 1 || w.rs != 0;
  const bool cols_ok = w.cols <= 1 || w.cs != 0;
  const bool separated = w.rows <= 1 || w.cols <= 1 || w.rs >= w.cols * w.cs || w.cs >= w.rows * w.rs;
  if (!rows_ok || !cols_ok || !separated)
    fail_arg("weight has strides [" + std::to_string(w.rs) + ", " + std::to_string(w.cs) +
             "] under which distinct elements share memory");
}

// The weight lines a slice selects, in slice order (validated by check_slice).
std::vector<int64_t> slice_lines(const s2ft_slice *slice, const Matrix &w) {
  const Lines l = check_slice(slice, "slice", w.rows, w.cols);
  std::vector<int64_t> lines(static_cast<size_t>(l.count));
  for (int64_t t = 0; t < l.count; ++t) lines[static_cast<size_t>(t)] = l.line(t);
  return lines;
}

// The first weight element that both p and q train, as "(r, c)", or ""
// when they share none. Slices of different axes are not compared (as
// before sparse parameters existed).
std::string shared_element(const OptimizerParam &p, const OptimizerParam &q) {
  const auto at = [](int64_t r, int64_t c) { return "(" + std::to_string(r) + ", " + std::to_string(c) + ")"; };
  if (p.sparse() && q.sparse()) {
    std::vector<int64_t> common;
    std::set_intersection(p.lines.begin(), p.lines.end(), q.lines.begin(), q.lines.end(), std::back_inserter(common));
    if (common.empty()) return "";
    return at(common[0] / p.weight.cols, common[0] % p.weight.cols);
  }
  if (p.sparse() || q.sparse()) {
    const OptimizerParam &sp = p.sparse() ? p : q, &sl = p.sparse() ? q : p;
    std::vector<int64_t> lines = sl.lines;
    std::sort(lines.begin(), lines.end());
    for (int64_t n : sp.lines) {
      const int64_t r = n / sp.weight.cols, c = n % sp.weight.cols;
      if (std::binary_search(lines.begin(), lines.end(), sl.axis == S2FT_AXIS_COLUMNS ? c : r)) return at(r, c);
    }
    return "";
  }
  if (p.axis != q.axis) return "";
  std::vector<int64_t> a = p.lines, b = q.lines;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  std::vector<int64_t> common;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(common));
  if (common.empty()) return "";
  return std::string("line ") + std::to_string(common[0]);
}

// Registering the same elements of the same weight twice would update them
// twice per step. `skip` is a parameter not to compare with (-1: none).
void require_new_elements(const s2ft_optimizer &opt, const OptimizerParam &q, const char *what, int64_t skip = -1) {
  for (size_t j = 0; j < opt.params.size(); ++j) {
    const OptimizerParam &p = opt.params[j];
    if (static_cast<int64_t>(j) == skip || !same_view(p.weight, q.weight)) continue;
    const std::string shared = shared_element(p, q);
    if (!shared.empty())
      fail_arg(std::string(what) + " overlaps parameter " + std::to_string(j) + " (both train " + shared +
               " of the same weight)");
  }
}

// Validates every gradient before anything changes, and returns them as views.
std::vector<Matrix> check_grads(const s2ft_optimizer &opt, const s2ft_tensor *grads, int64_t n_grads) {
  const int64_t n = static_cast<int64_t>(opt.params.size());
  if (n_grads != n)
    fail_arg("n_grads is " + std::to_string(n_grads) + " but the optimizer has " + std::to_string(n) + " parameters");
  if (n > 0) require_not_null(grads, "grads");
  std::vector<Matrix> views;
  views.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const OptimizerParam &p = opt.params[static_cast<size_t>(i)];
    const std::string name = "grads[" + std::to_string(i) + "]";
    Matrix g;
    if (p.sparse()) {
      g = check_vector(&grads[i], name.c_str(), opt.device, p.cols);
    } else {
      g = check_matrix(&grads[i], name.c_str(), opt.device);
      require_shape(g, name.c_str(), p.rows, p.cols);
    }
    if (g.dtype != S2FT_F32 && g.dtype != p.weight.dtype)
      fail(S2FT_ERR_DTYPE, name + " is " + dtype_name(g.dtype) + " but must be f32 or the weight's dtype (" +
                               dtype_name(p.weight.dtype) + ")");
    for (size_t j = 0; j < opt.params.size(); ++j) {
      const std::string wname = "the weight of parameter " + std::to_string(j);
      require_disjoint(opt.params[j].weight, wname.c_str(), g, name.c_str());
    }
    views.push_back(g);
  }
  return views;
}

}  // namespace

bool same_view(const Matrix &a, const Matrix &b) {
  return a.base == b.base && a.dtype == b.dtype && a.rows == b.rows && a.cols == b.cols && a.rs == b.rs &&
         a.cs == b.cs;
}

OptimizerParam &sparse_param(s2ft_optimizer &opt, int64_t index, const char *name) {
  const int64_t n = static_cast<int64_t>(opt.params.size());
  if (index < 0 || index >= n)
    fail_arg(std::string(name) + " " + std::to_string(index) + " is out of range (the optimizer has " +
             std::to_string(n) + " parameters)");
  OptimizerParam &p = opt.params[static_cast<size_t>(index)];
  if (!p.sparse())
    fail_arg("parameter " + std::to_string(index) + " is a slice, not a sparse parameter (s2ft_optimizer_add_sparse)");
  return p;
}

void sparse_reindex(s2ft_optimizer &opt, int64_t index, const s2ft_sparse_set *set, const char *set_name) {
  const OptimizerParam &p = sparse_param(opt, index, "index");
  const s2ft_sparse_set &s =
      require_sparse_set(set, set_name, opt.device, p.weight.rows, p.weight.cols, "the parameter's weight");
  sparse_reindex(opt, index, s.entries->indices, set_name);
}

void sparse_reindex(s2ft_optimizer &opt, int64_t index, std::vector<int64_t> lines, const char *what) {
  OptimizerParam &p = sparse_param(opt, index, "index");
  OptimizerParam next;
  next.weight = p.weight;
  next.axis = p.axis;
  next.lines = std::move(lines);
  next.rows = 1;
  next.cols = static_cast<int64_t>(next.lines.size());
  require_new_elements(opt, next, what, index);
  const std::vector<int64_t> source = entry_sources(p.lines, next.lines);
  run(*opt.ctx, &backend::Ops::optimizer_reindex, p, next, source, opt.options, &next.state);
  p = std::move(next);
}

std::vector<int64_t> other_sparse_entries(const s2ft_optimizer &opt, int64_t index, const char *what) {
  const OptimizerParam &p = opt.params[static_cast<size_t>(index)];
  std::vector<int64_t> out;
  for (size_t j = 0; j < opt.params.size(); ++j) {
    const OptimizerParam &q = opt.params[j];
    if (static_cast<int64_t>(j) == index || !same_view(p.weight, q.weight)) continue;
    if (!q.sparse())
      fail_arg(std::string(what) + " cannot move the entries of parameter " + std::to_string(index) +
               ": parameter " + std::to_string(j) + " is a slice of the same weight");
    std::vector<int64_t> merged;
    std::merge(out.begin(), out.end(), q.lines.begin(), q.lines.end(), std::back_inserter(merged));
    out.swap(merged);
  }
  return out;
}

std::vector<float> read_param_state(const s2ft_optimizer &opt, int64_t index, backend::StateTensor which) {
  const OptimizerParam &p = opt.params[static_cast<size_t>(index)];
  std::vector<float> v(p.state_size(which));
  run(*opt.ctx, &backend::Ops::optimizer_read_state, p, which, v.data(), v.size());
  return v;
}

void write_param_state(const s2ft_optimizer &opt, int64_t index, backend::StateTensor which,
                       const std::vector<float> &values) {
  const OptimizerParam &p = opt.params[static_cast<size_t>(index)];
  run(*opt.ctx, &backend::Ops::optimizer_write_state, p, which, values.data(), values.size());
}

int64_t current_steps(const s2ft_optimizer &opt) {
  if (opt.steps_pending) {
    run(*opt.ctx, &backend::Ops::optimizer_steps, opt.state.get(), &opt.steps);
    opt.steps_pending = false;
  }
  return opt.steps;
}

}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_optimizer_options_init(s2ft_optimizer_options *opts, uint32_t version) {
  return s2ft::guard("s2ft_optimizer_options_init", [&] {
    s2ft::require_not_null(opts, "opts");
    if (version < 1 || version > S2FT_OPTIMIZER_OPTIONS_VERSION)
      s2ft::fail_arg("unknown options version " + std::to_string(version) + " (this library knows 1 to " +
                     std::to_string(S2FT_OPTIMIZER_OPTIONS_VERSION) + ")");
    s2ft_optimizer_options o = s2ft::default_options();
    o.version = version;
    std::memcpy(opts, &o, s2ft::options_size(version));  // a version-1 struct is shorter
  });
}

S2FT_API s2ft_status s2ft_optimizer_create(s2ft_context *ctx, const s2ft_optimizer_options *opts,
                                           s2ft_optimizer **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_optimizer_create", [&] {
    s2ft_context &c = s2ft::require_context(ctx);
    s2ft::require_not_null(opts, "opts");
    s2ft::require_not_null(out, "out");
    const s2ft_optimizer_options o = s2ft::read_options(opts);
    s2ft::check_options(o);
    auto opt = std::make_unique<s2ft_optimizer>();
    opt->device = c.device;
    opt->ctx = &c;
    opt->options = o;
    s2ft::run(c, &s2ft::backend::Ops::optimizer_create, &opt->state);
    *out = opt.release();
  });
}

S2FT_API void s2ft_optimizer_destroy(s2ft_optimizer *opt) {
  if (s2ft::destroyable(opt)) delete opt;
}

S2FT_API s2ft_status s2ft_optimizer_add_param(s2ft_optimizer *opt, s2ft_tensor *weight, const s2ft_slice *slice,
                                              int64_t *index) {
  if (index != nullptr) *index = -1;
  return s2ft::guard("s2ft_optimizer_add_param", [&] {
    s2ft::require_live(opt, "opt");
    s2ft::require_not_null(weight, "weight");
    s2ft::require_not_null(slice, "slice");
    s2ft::require_not_null(index, "index");
    const int64_t steps = s2ft::current_steps(*opt);
    if (steps > 0)
      s2ft::fail(S2FT_ERR_STATE, "parameters must be added before the first step (the optimizer has taken " +
                                     std::to_string(steps) + ")");
    s2ft::OptimizerParam p;
    p.weight = s2ft::check_matrix(weight, "weight", opt->device);
    s2ft::require_no_aliasing(p.weight);
    p.lines = s2ft::slice_lines(slice, p.weight);
    p.axis = slice->axis;
    s2ft::require_new_elements(*opt, p, "slice");
    const int64_t k = slice->count;
    p.rows = p.axis == S2FT_AXIS_COLUMNS ? p.weight.rows : k;
    p.cols = p.axis == S2FT_AXIS_COLUMNS ? k : p.weight.cols;
    s2ft::run(*opt->ctx, &s2ft::backend::Ops::optimizer_add_param, p, opt->options, &p.state);
    opt->params.push_back(std::move(p));
    *index = static_cast<int64_t>(opt->params.size()) - 1;
  });
}

S2FT_API s2ft_status s2ft_optimizer_add_sparse(s2ft_optimizer *opt, s2ft_tensor *weight, const s2ft_sparse_set *set,
                                               int64_t *index) {
  if (index != nullptr) *index = -1;
  return s2ft::guard("s2ft_optimizer_add_sparse", [&] {
    using namespace s2ft;
    require_live(opt, "opt");
    require_not_null(weight, "weight");
    require_not_null(index, "index");
    const int64_t steps = current_steps(*opt);
    if (steps > 0)
      fail(S2FT_ERR_STATE, "parameters must be added before the first step (the optimizer has taken " +
                               std::to_string(steps) + ")");
    OptimizerParam p;
    p.weight = check_matrix(weight, "weight", opt->device);
    require_no_aliasing(p.weight);
    const s2ft_sparse_set &s = require_sparse_set(set, "set", opt->device, p.weight.rows, p.weight.cols, "weight");
    p.axis = kAxisEntries;
    p.lines = s.entries->indices;
    p.rows = 1;
    p.cols = s.count();
    require_new_elements(*opt, p, "set");
    run(*opt->ctx, &backend::Ops::optimizer_add_param, p, opt->options, &p.state);
    opt->params.push_back(std::move(p));
    *index = static_cast<int64_t>(opt->params.size()) - 1;
  });
}

S2FT_API s2ft_status s2ft_optimizer_sparse_reindex(s2ft_optimizer *opt, int64_t index,
                                                   const s2ft_sparse_set *new_set) {
  return s2ft::guard("s2ft_optimizer_sparse_reindex", [&] {
    using namespace s2ft;
    require_live(opt, "opt");
    sparse_reindex(*opt, index, new_set, "new_set");
  });
}

S2FT_API s2ft_status s2ft_optimizer_step(s2ft_optimizer *opt, double lr, const s2ft_tensor *grads, int64_t n_grads,
                                         double *grad_norm) {
  return s2ft::guard("s2ft_optimizer_step", [&] {
    s2ft::require_live(opt, "opt");
    if (!(std::isfinite(lr) && lr >= 0.0)) s2ft::fail_arg("lr must be finite and >= 0, got " + s2ft::num(lr));
    const std::vector<s2ft::Matrix> g = s2ft::check_grads(*opt, grads, n_grads);
    const s2ft_optimizer_options &o = opt->options;
    // The norm is needed on the host only to clip (the factor is applied on
    // the device, but a non-finite norm must fail the call) or to report it.
    const bool report = o.max_grad_norm > 0.0 || grad_norm != nullptr;
    s2ft::backend::StepReport r;
    s2ft::run(*opt->ctx, &s2ft::backend::Ops::optimizer_step, opt->state.get(), opt->params, g, o, lr, opt->steps,
              report, &r);
    if (!r.known) {
      ++opt->steps;  // assumed applied; the backend knows (current_steps)
      opt->steps_pending = true;
      return;
    }
    opt->steps = r.steps;
    opt->steps_pending = false;
    if (grad_norm != nullptr) *grad_norm = r.norm;
    if (!r.applied)
      s2ft::fail_arg("the global gradient norm is not finite" +
                     (r.bad >= 0 ? " (grads[" + std::to_string(r.bad) + "] holds inf or NaN)" : std::string()) +
                     "; no parameter was changed");
  });
}

S2FT_API s2ft_status s2ft_optimizer_step_count(const s2ft_optimizer *opt, int64_t *out) {
  return s2ft::guard("s2ft_optimizer_step_count", [&] {
    s2ft::require_live(opt, "opt");
    s2ft::require_not_null(out, "out");
    *out = s2ft::current_steps(*opt);
  });
}

}  // extern "C"
