// Saving and restoring optimizer state as a safetensors file
// (docs/optimizer-state-format.md):
//   __metadata__: format "s2ft-optimizer", version "1" or "2", kind
//     ("adamw", "sgd" or "sm3"), step, n_params, the options (%.17g, so
//     they read back exactly) and param.{i}.axis ("columns", "rows" or
//     "sparse");
//   tensors (F32): param.{i}.m and param.{i}.v (AdamW),
//     param.{i}.momentum (SGD or SM3 with momentum > 0), param.{i}.master
//     (f16/bf16 weights), param.{i}.age (AdamW with age bias correction,
//     sparse parameters), param.{i}.row_acc and param.{i}.col_acc (SM3);
//     per-element tensors have the slice shape [rows, cols], or [count]
//     for a sparse parameter, whose flat indices are param.{i}.indices
//     (I64 [count]).
// Version 1 is written while the optimizer uses nothing version 2 added
// (sparse parameters, SM3, age bias correction), so such files stay
// readable by older libraries; both versions are read.
// Loading checks the whole file against this optimizer before it changes
// anything, so a bad file leaves the optimizer and the weights untouched.
// The state is read from the context's backend to save (synchronising on a
// device) and written back on load, with the masters written to the
// weights; the file is the same, so state moves freely between backends.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "context.hpp"
#include "io/safetensors.hpp"
#include "train/optimizer.hpp"

namespace s2ft {

namespace {

const char *const kFormat = "s2ft-optimizer";

const char *kind_name(int32_t kind) {
  return kind == S2FT_OPTIMIZER_ADAMW ? "adamw" : kind == S2FT_OPTIMIZER_SGD ? "sgd" : "sm3";
}
const char *axis_name(int32_t axis) {
  return axis == S2FT_AXIS_COLUMNS ? "columns" : axis == S2FT_AXIS_ROWS ? "rows" : "sparse";
}

std::string num(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

// The state tensors in file order, by their name suffix.
struct StateKind {
  const char *suffix;
  backend::StateTensor which;
};

const StateKind kStates[] = {
    {"m", backend::StateTensor::m},           {"v", backend::StateTensor::v},
    {"momentum", backend::StateTensor::momentum}, {"master", backend::StateTensor::master},
    {"age", backend::StateTensor::age},       {"row_acc", backend::StateTensor::row_acc},
    {"col_acc", backend::StateTensor::col_acc},
};

// The shape a state tensor has in the file.
std::vector<int64_t> state_shape(const OptimizerParam &p, backend::StateTensor which) {
  if (which == backend::StateTensor::row_acc || which == backend::StateTensor::col_acc || p.sparse())
    return {static_cast<int64_t>(p.state_size(which))};
  return {p.rows, p.cols};
}

std::string shape_text(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Whether the optimizer uses anything format version 2 added.
bool needs_version_2(const s2ft_optimizer &opt) {
  if (opt.options.kind == S2FT_OPTIMIZER_SM3 || opt.options.age_bias_correction != 0) return true;
  for (const OptimizerParam &p : opt.params)
    if (p.sparse()) return true;
  return false;
}

// The values of state tensor `k` of parameter p, read from the backend.
std::vector<float> state_values(const s2ft_optimizer &opt, const OptimizerParam &p, const StateKind &k) {
  std::vector<float> v(p.state_size(k.which));
  run(*opt.ctx, &backend::Ops::optimizer_read_state, p, k.which, v.data(), v.size());
  return v;
}

std::string tensor_name(size_t i, const char *suffix) { return "param." + std::to_string(i) + "." + suffix; }

[[noreturn]] void bad_state(const std::string &path, const std::string &message) {
  fail(S2FT_ERR_FORMAT, "'" + path + "' does not hold state for this optimizer: " + message);
}

// A metadata value, which must be present.
const std::string &meta(const io::SafetensorsFile &f, const std::string &key, const std::string &path) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end()) bad_state(path, "its metadata has no \"" + key + "\"");
  return it->second;
}

// A decimal integer in [0, INT64_MAX], digits only.
int64_t parse_count(const std::string &s, const std::string &key, const std::string &path) {
  bool ok = !s.empty() && s.size() <= 19;
  for (char c : s) ok = ok && c >= '0' && c <= '9';
  errno = 0;
  const long long v = ok ? std::strtoll(s.c_str(), nullptr, 10) : -1;
  if (!ok || errno != 0 || v < 0) bad_state(path, "metadata \"" + key + "\" = \"" + s + "\" is not a non-negative integer");
  return static_cast<int64_t>(v);
}

// A finite number written with %.17g.
double parse_number(const std::string &s, const std::string &key, const std::string &path) {
  char *end = nullptr;
  errno = 0;
  const double v = s.empty() ? 0.0 : std::strtod(s.c_str(), &end);
  if (s.empty() || errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v))
    bad_state(path, "metadata \"" + key + "\" = \"" + s + "\" is not a finite number");
  return v;
}

}  // namespace

}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_optimizer_save(const s2ft_optimizer *opt, const char *path) {
  return s2ft::guard("s2ft_optimizer_save", [&] {
    s2ft::require_live(opt, "opt");
    s2ft::require_not_null(path, "path");
    const s2ft_optimizer_options &o = opt->options;
    s2ft::io::SafetensorsWriter w;
    w.set_metadata("format", s2ft::kFormat);
    const bool v2 = s2ft::needs_version_2(*opt);
    w.set_metadata("version", v2 ? "2" : "1");
    w.set_metadata("kind", s2ft::kind_name(o.kind));
    w.set_metadata("step", std::to_string(s2ft::current_steps(*opt)));
    w.set_metadata("n_params", std::to_string(opt->params.size()));
    w.set_metadata("beta1", s2ft::num(o.beta1));
    w.set_metadata("beta2", s2ft::num(o.beta2));
    w.set_metadata("eps", s2ft::num(o.eps));
    w.set_metadata("weight_decay", s2ft::num(o.weight_decay));
    w.set_metadata("momentum", s2ft::num(o.momentum));
    w.set_metadata("nesterov", o.nesterov != 0 ? "1" : "0");
    w.set_metadata("max_grad_norm", s2ft::num(o.max_grad_norm));
    if (v2) w.set_metadata("age_bias_correction", o.age_bias_correction != 0 ? "1" : "0");
    for (size_t i = 0; i < opt->params.size(); ++i) {
      const s2ft::OptimizerParam &p = opt->params[i];
      w.set_metadata("param." + std::to_string(i) + ".axis", s2ft::axis_name(p.axis));
      if (p.sparse())
        w.add(s2ft::tensor_name(i, "indices"), "I64", {p.cols}, p.lines.data(), p.lines.size() * sizeof(int64_t));
      for (const auto &k : s2ft::kStates) {
        if (!s2ft::has_state(o, p, k.which)) continue;
        const std::vector<float> v = s2ft::state_values(*opt, p, k);
        w.add(s2ft::tensor_name(i, k.suffix), "F32", s2ft::state_shape(p, k.which), v.data(), v.size() * sizeof(float));
      }
    }
    w.write(path);
  });
}

S2FT_API s2ft_status s2ft_optimizer_load(s2ft_optimizer *opt, const char *path) {
  return s2ft::guard("s2ft_optimizer_load", [&] {
    s2ft::require_live(opt, "opt");
    s2ft::require_not_null(path, "path");
    const std::string where(path);
    const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(where);
    const s2ft_optimizer_options &o = opt->options;

    // 1. Metadata: what the file is, and that it fits this optimizer.
    const std::string &format = s2ft::meta(f, "format", where);
    if (format != s2ft::kFormat)
      s2ft::bad_state(where, "its format is \"" + format + "\", expected \"" + s2ft::kFormat + "\"");
    const std::string &version = s2ft::meta(f, "version", where);
    if (version != "1" && version != "2")
      s2ft::bad_state(where, "format version \"" + version + "\" is not supported (this library reads \"1\" and \"2\")");
    const std::string &kind = s2ft::meta(f, "kind", where);
    if (kind != s2ft::kind_name(o.kind))
      s2ft::bad_state(where, "it holds \"" + kind + "\" state but this optimizer is \"" + s2ft::kind_name(o.kind) + "\"");
    const int64_t step = s2ft::parse_count(s2ft::meta(f, "step", where), "step", where);
    const int64_t n_params = s2ft::parse_count(s2ft::meta(f, "n_params", where), "n_params", where);
    if (n_params != static_cast<int64_t>(opt->params.size()))
      s2ft::bad_state(where, "it has " + std::to_string(n_params) + " parameters but this optimizer has " +
                                 std::to_string(opt->params.size()));
    // The optimizer keeps its own hyperparameters; the saved ones must still be well-formed.
    for (const char *key : {"beta1", "beta2", "eps", "weight_decay", "momentum", "max_grad_norm"})
      s2ft::parse_number(s2ft::meta(f, key, where), key, where);
    for (const char *key : {"nesterov", "age_bias_correction"}) {
      if (version == "1" && std::strcmp(key, "nesterov") != 0) continue;  // added in version 2
      const std::string &flag = s2ft::meta(f, key, where);
      if (flag != "0" && flag != "1")
        s2ft::bad_state(where, std::string("metadata \"") + key + "\" = \"" + flag + "\" is not \"0\" or \"1\"");
    }

    // 2. Tensors: exactly the expected ones, F32, with the slice shape. The
    // values are staged so nothing changes unless the whole file is good.
    std::vector<std::vector<std::vector<float>>> staged(opt->params.size());
    size_t expected = 0;
    for (size_t i = 0; i < opt->params.size(); ++i) {
      const s2ft::OptimizerParam &p = opt->params[i];
      const std::string axis_key = "param." + std::to_string(i) + ".axis";
      const std::string &axis = s2ft::meta(f, axis_key, where);
      if (axis != s2ft::axis_name(p.axis))
        s2ft::bad_state(where, "parameter " + std::to_string(i) + " is a slice of " + axis +
                                   " in the file but of " + s2ft::axis_name(p.axis) + " here");
      if (p.sparse()) {  // the parameter's current entries must be the file's
        ++expected;
        const std::string name = s2ft::tensor_name(i, "indices");
        const s2ft::io::TensorInfo *t = f.find(name);
        if (t == nullptr) s2ft::bad_state(where, "tensor \"" + name + "\" is missing");
        if (t->dtype != "I64") s2ft::bad_state(where, "tensor \"" + name + "\" is " + t->dtype + ", expected I64");
        if (t->shape != std::vector<int64_t>{p.cols})
          s2ft::bad_state(where, "sparse parameter " + std::to_string(i) + " has " + std::to_string(p.cols) +
                                     " entries but tensor \"" + name + "\" is " + s2ft::shape_text(t->shape) +
                                     " (reindex to the saved set before loading)");
        std::vector<int64_t> saved(p.lines.size());
        if (!saved.empty()) std::memcpy(saved.data(), f.data(*t), saved.size() * sizeof(int64_t));
        for (size_t e = 0; e < saved.size(); ++e)
          if (saved[e] != p.lines[e])
            s2ft::bad_state(where, "sparse parameter " + std::to_string(i) + " trains flat index " +
                                       std::to_string(p.lines[e]) + " as entry " + std::to_string(e) +
                                       " but the file has " + std::to_string(saved[e]) +
                                       " (reindex to the saved set before loading)");
      }
      for (const auto &k : s2ft::kStates) {
        staged[i].emplace_back();
        if (!s2ft::has_state(o, p, k.which)) continue;
        ++expected;
        const std::string name = s2ft::tensor_name(i, k.suffix);
        const s2ft::io::TensorInfo *t = f.find(name);
        if (t == nullptr) s2ft::bad_state(where, "tensor \"" + name + "\" is missing");
        if (t->dtype != "F32") s2ft::bad_state(where, "tensor \"" + name + "\" is " + t->dtype + ", expected F32");
        const std::vector<int64_t> shape = s2ft::state_shape(p, k.which);
        if (t->shape != shape)
          s2ft::bad_state(where, "tensor \"" + name + "\" is " + s2ft::shape_text(t->shape) + ", expected " +
                                     s2ft::shape_text(shape));
        std::vector<float> &values = staged[i].back();
        values.resize(p.state_size(k.which));
        if (!values.empty()) std::memcpy(values.data(), f.data(*t), values.size() * sizeof(float));
        const bool non_negative = k.which == s2ft::backend::StateTensor::v || k.which == s2ft::backend::StateTensor::age ||
                                  k.which == s2ft::backend::StateTensor::row_acc ||
                                  k.which == s2ft::backend::StateTensor::col_acc;
        for (size_t e = 0; e < values.size() && non_negative; ++e)
          if (!(values[e] >= 0.0f) || (k.which == s2ft::backend::StateTensor::age &&
                                       (values[e] != std::floor(values[e]) || values[e] > 16777216.0f)))
            s2ft::bad_state(where, "tensor \"" + name + "\" holds " + s2ft::num(values[e]) + " at element " +
                                       std::to_string(e) + " (expected " +
                                       (k.which == s2ft::backend::StateTensor::age ? "an integer in [0, 2^24]"
                                                                                    : "a value >= 0") +
                                       ")");
      }
    }
    if (f.tensors().size() != expected) {
      for (const auto &t : f.tensors()) {
        bool known = false;
        for (size_t i = 0; i < opt->params.size() && !known; ++i)
          for (const auto &k : s2ft::kStates)
            known = known || (s2ft::has_state(o, opt->params[i], k.which) && t.name == s2ft::tensor_name(i, k.suffix)) ||
                    (opt->params[i].sparse() && t.name == s2ft::tensor_name(i, "indices"));
        if (!known) s2ft::bad_state(where, "tensor \"" + t.name + "\" is not state of this optimizer");
      }
    }

    // 3. Commit (nothing below can fail, but for a device error).
    const s2ft_context &c = *opt->ctx;
    for (size_t i = 0; i < opt->params.size(); ++i) {
      const s2ft::OptimizerParam &p = opt->params[i];
      for (size_t s = 0; s < std::size(s2ft::kStates); ++s)
        if (s2ft::has_state(o, p, s2ft::kStates[s].which))
          s2ft::run(c, &s2ft::backend::Ops::optimizer_write_state, p, s2ft::kStates[s].which, staged[i][s].data(),
                    staged[i][s].size());
      s2ft::run(c, &s2ft::backend::Ops::optimizer_write_master, p);
    }
    s2ft::run(c, &s2ft::backend::Ops::optimizer_set_steps, opt->state.get(), step);
    s2ft::run(c, &s2ft::backend::Ops::synchronize);
    opt->steps_pending = false;
    opt->steps = step;
  });
}

}  // extern "C"
