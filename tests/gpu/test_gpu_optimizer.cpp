// The optimizer on a CUDA context against the CPU backend, step by step:
// AdamW and SGD (momentum, Nesterov, weight decay), f32/f16/bf16 weights
// with f32 or own-dtype gradients, column and row slices (contiguous and
// indexed, k = 1 and k = all), strided weights, padded and column-major
// gradients, clipping, non-finite gradients with and without a reported
// norm, and state files moving between the backends.
#include <cuda_runtime.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gpu/gpu_support.hpp"

namespace {

using s2ft_gpu::DeviceMatrix;
using s2ft_gpu::GpuContext;
using s2ft_gpu::settle;
using s2ft_test::HostMatrix;
using s2ft_test::Random;
using s2ft_test::transpose;

std::vector<int64_t> range(int64_t begin, int64_t count) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < count; ++i) v.push_back(begin + i);
  return v;
}

// `count` distinct lines out of [0, n), in a random order.
std::vector<int64_t> shuffled_lines(int64_t n, int64_t count, uint64_t seed) {
  std::vector<int64_t> all = range(0, n);
  Random rng(seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(rng.below(i + 1))]);
  all.resize(static_cast<size_t>(count));
  return all;
}

std::string slurp(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string temp_path(const std::string &name) {
  return ::testing::TempDir() + "s2ft_gpu_opt_" + std::to_string(getpid()) + "_" + name;
}

// A state file written by s2ft_optimizer_save(): its F32 tensors and metadata.
struct StateFile {
  std::string bytes, header;
  explicit StateFile(const std::string &path) : bytes(slurp(path)) {
    if (bytes.size() < 8) return;
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    if (8 + n <= bytes.size()) header = bytes.substr(8, n);
  }
  bool has(const std::string &name) const { return header.find("\"" + name + "\":{") != std::string::npos; }
  std::vector<float> tensor(const std::string &name) const {
    const size_t p = header.find("\"" + name + "\":{");
    if (p == std::string::npos) return {};
    const std::string key = "\"data_offsets\":[";
    const size_t q = header.find(key, p);
    if (q == std::string::npos) return {};
    char *end = nullptr;
    const uint64_t a = std::strtoull(header.c_str() + q + key.size(), &end, 10);
    const uint64_t b = std::strtoull(end + 1, nullptr, 10);
    const size_t base = 8 + header.size();
    if (b < a || base + b > bytes.size()) return {};
    std::vector<float> v(static_cast<size_t>((b - a) / 4));
    if (!v.empty()) std::memcpy(v.data(), bytes.data() + base + a, v.size() * 4);
    return v;
  }
  std::string meta(const std::string &key) const {
    const std::string k = "\"" + key + "\":\"";
    const size_t p = header.find(k);
    if (p == std::string::npos) return "<missing>";
    const size_t e = header.find('"', p + k.size());
    return header.substr(p + k.size(), e - p - k.size());
  }
};

// max |a - b| / max |b| (1 when b is all zero); infinite on a size or NaN mismatch.
double rel_diff(const std::vector<float> &a, const std::vector<float> &b) {
  if (a.size() != b.size()) return INFINITY;
  double d = 0.0, s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    if (!std::isnan(b[i])) d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
    s = std::max(s, std::fabs(static_cast<double>(b[i])));
  }
  return d / (s > 0.0 ? s : 1.0);
}

// ---------------------------------------------------------------------------
// One parameter: a weight, its trained lines, and how the test lays out the
// device copies.

struct Spec {
  int32_t wdtype = S2FT_F32;
  int64_t out = 0, in = 0;
  int32_t axis = S2FT_AXIS_COLUMNS;
  std::vector<int64_t> lines;
  bool indexed = false;
  int64_t w_pad = 0;         // extra elements per device weight row
  int32_t gdtype = S2FT_F32; // gradient dtype: f32 or wdtype
  int g_layout = 0;          // 0 compact, 1 padded rows, 2 column-major

  int64_t rows() const { return axis == S2FT_AXIS_COLUMNS ? out : static_cast<int64_t>(lines.size()); }
  int64_t cols() const { return axis == S2FT_AXIS_COLUMNS ? static_cast<int64_t>(lines.size()) : in; }
  s2ft_slice slice() const {
    s2ft_slice s{};
    s.axis = axis;
    s.begin = lines.front();
    s.count = static_cast<int64_t>(lines.size());
    s.indices = indexed ? lines.data() : nullptr;
    return s;
  }
  bool in_slice(int64_t r, int64_t c) const {
    const int64_t line = axis == S2FT_AXIS_COLUMNS ? c : r;
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  }
};

// Every dtype, both axes, contiguous and indexed, k = 1 and k = all, all
// three gradient layouts; two parameters span several 4096-element chunks.
std::vector<Spec> mixed_specs() {
  std::vector<Spec> v;
  v.push_back({S2FT_F32, 37, 29, S2FT_AXIS_COLUMNS, range(3, 5), false, 0, S2FT_F32, 0});
  v.push_back({S2FT_F32, 23, 31, S2FT_AXIS_ROWS, {7, 0, 22, 13}, true, 5, S2FT_F32, 1});
  v.push_back({S2FT_F16, 19, 41, S2FT_AXIS_COLUMNS, {40}, true, 3, S2FT_F16, 2});
  v.push_back({S2FT_F16, 33, 17, S2FT_AXIS_ROWS, range(0, 33), false, 0, S2FT_F32, 1});
  v.push_back({S2FT_BF16, 29, 45, S2FT_AXIS_COLUMNS, range(0, 45), false, 2, S2FT_BF16, 0});
  v.push_back({S2FT_BF16, 26, 21, S2FT_AXIS_ROWS, {25, 3, 11}, true, 0, S2FT_F32, 2});
  v.push_back({S2FT_F32, 130, 97, S2FT_AXIS_COLUMNS, shuffled_lines(97, 61, 5), true, 1, S2FT_F32, 0});
  v.push_back({S2FT_BF16, 90, 257, S2FT_AXIS_ROWS, shuffled_lines(90, 40, 6), true, 0, S2FT_BF16, 1});
  v.push_back({S2FT_F16, 1, 9, S2FT_AXIS_COLUMNS, range(8, 1), false, 0, S2FT_F16, 0});
  return v;
}

std::vector<Spec> small_specs() {
  std::vector<Spec> v;
  v.push_back({S2FT_F32, 11, 13, S2FT_AXIS_COLUMNS, {12, 2, 5}, true, 2, S2FT_F32, 1});
  v.push_back({S2FT_BF16, 9, 7, S2FT_AXIS_ROWS, range(2, 4), false, 0, S2FT_BF16, 0});
  v.push_back({S2FT_F16, 6, 10, S2FT_AXIS_COLUMNS, range(0, 10), false, 1, S2FT_F32, 2});
  return v;
}

s2ft_optimizer_options options(int32_t kind) {
  s2ft_optimizer_options o;
  EXPECT_EQ(s2ft_optimizer_options_init(&o, S2FT_OPTIMIZER_OPTIONS_VERSION), S2FT_OK);
  o.kind = kind;
  return o;
}

// What one step did on each backend.
struct StepResult {
  s2ft_status cpu = S2FT_OK, gpu = S2FT_OK;
  std::string cpu_error, gpu_error;
  double cpu_norm = -1.0, gpu_norm = -1.0;
};

// The same parameters on a CPU optimizer (host weights) and a CUDA
// optimizer (device weights), fed the same gradients.
class Rig {
 public:
  Rig(const s2ft_optimizer_options &o, std::vector<Spec> specs, uint64_t seed)
      : o_(o), specs_(std::move(specs)), rng_(seed) {
    for (const Spec &s : specs_) {
      HostMatrix w(s.wdtype, s.out, s.in);
      w.fill_random(rng_);
      initial_.push_back(w);
      cpu_w_.push_back(std::make_unique<HostMatrix>(w));
      gpu_w_.push_back(std::make_unique<DeviceMatrix>(w, s.in + s.w_pad));
    }
    settle();
    cpu_opt_ = make_optimizer(cpu_.ctx, true);
    gpu_opt_ = make_optimizer(gpu_.ctx, false);
  }
  ~Rig() {
    gpu_.sync();
    s2ft_optimizer_destroy(cpu_opt_);
    s2ft_optimizer_destroy(gpu_opt_);
  }
  Rig(const Rig &) = delete;
  Rig &operator=(const Rig &) = delete;

  size_t size() const { return specs_.size(); }
  s2ft_optimizer *cpu_opt() { return cpu_opt_; }
  s2ft_optimizer *gpu_opt() { return gpu_opt_; }
  GpuContext &gpu() { return gpu_; }

  // One step with fresh random gradients on both backends. The CUDA call gets
  // a grad_norm pointer only with `report` (without it, and without
  // clipping, it runs the asynchronous path). `poison_param` >= 0 puts
  // `poison` into that gradient's element (0, 0).
  StepResult step(double lr, bool report, double gscale = 1.0, int64_t poison_param = -1, float poison = NAN) {
    const size_t n = specs_.size();
    std::vector<HostMatrix> gh;
    gh.reserve(n);
    for (size_t k = 0; k < n; ++k) {
      gh.emplace_back(specs_[k].gdtype, specs_[k].rows(), specs_[k].cols());
      gh.back().fill_random(rng_, gscale);
      if (static_cast<int64_t>(k) == poison_param) gh.back().set(0, 0, poison);
    }
    std::vector<DeviceMatrix> gd;
    gd.reserve(n);
    std::vector<s2ft_tensor> tc, tg;
    for (size_t k = 0; k < n; ++k) {
      const Spec &s = specs_[k];
      tc.push_back(gh[k].t);
      if (s.g_layout == 2) {
        gd.emplace_back(transpose(gh[k]));
        s2ft_tensor t = gd.back().t;  // storage [cols, rows]: view (i, j) at j * rows + i
        t.shape[0] = s.rows();
        t.shape[1] = s.cols();
        t.strides[0] = 1;
        t.strides[1] = s.rows();
        tg.push_back(t);
      } else {
        gd.emplace_back(gh[k], s.g_layout == 1 ? s.cols() + 3 : -1);
        tg.push_back(gd.back().t);
      }
    }
    settle();
    StepResult r;
    s2ft_clear_error();
    r.cpu = s2ft_optimizer_step(cpu_opt_, lr, tc.data(), static_cast<int64_t>(n), &r.cpu_norm);
    r.cpu_error = s2ft_last_error();
    s2ft_clear_error();
    r.gpu = s2ft_optimizer_step(gpu_opt_, lr, tg.data(), static_cast<int64_t>(n), report ? &r.gpu_norm : nullptr);
    r.gpu_error = s2ft_last_error();
    gpu_.sync();  // the gradients die with this scope
    return r;
  }

  // A step that must succeed on both, with norms compared when reported.
  void good_step(double lr, bool report, double gscale = 1.0) {
    const StepResult r = step(lr, report, gscale);
    ASSERT_EQ(r.cpu, S2FT_OK) << r.cpu_error;
    ASSERT_EQ(r.gpu, S2FT_OK) << r.gpu_error;
    if (report) {
      EXPECT_NEAR(r.gpu_norm, r.cpu_norm, 1e-12 * r.cpu_norm);
    }
  }

  // The device weights now.
  std::vector<HostMatrix> gpu_weights() {
    gpu_.sync();
    std::vector<HostMatrix> v;
    for (const auto &d : gpu_w_) v.push_back(d->download());
    return v;
  }

  // Weights agree with the CPU's (f32 within f32_tol of the largest value,
  // 16-bit within their tolerance), and nothing outside a slice changed.
  void expect_weights_match(const std::string &when, double f32_tol = 1e-6) {
    const std::vector<HostMatrix> got = gpu_weights();
    for (size_t k = 0; k < specs_.size(); ++k) {
      const Spec &s = specs_[k];
      const double tol = s.wdtype == S2FT_F32 ? f32_tol : s2ft_test::tolerance(s.wdtype);
      EXPECT_LE(s2ft_gpu::max_rel_diff(got[k], *cpu_w_[k]), tol)
          << when << ": param " << k << " (" << s2ft_test::dtype_label(s.wdtype) << ")";
      const size_t e = got[k].elem();
      for (int64_t r = 0; r < s.out; ++r)
        for (int64_t c = 0; c < s.in; ++c)
          if (!s.in_slice(r, c)) {
            const size_t at = static_cast<size_t>(r * s.in + c) * e;
            ASSERT_EQ(std::memcmp(&got[k].bytes[at], &initial_[k].bytes[at], e), 0)
                << when << ": param " << k << " element (" << r << ", " << c << ") outside the slice changed";
          }
    }
  }

  int64_t gpu_steps() {
    int64_t n = -1;
    EXPECT_EQ(s2ft_optimizer_step_count(gpu_opt_, &n), S2FT_OK) << s2ft_last_error();
    return n;
  }
  int64_t cpu_steps() {
    int64_t n = -1;
    EXPECT_EQ(s2ft_optimizer_step_count(cpu_opt_, &n), S2FT_OK) << s2ft_last_error();
    return n;
  }

  // Saves both and compares the state files tensor by tensor (f32 state
  // within `tol` of the largest value) and the step count.
  void expect_state_match(const std::string &name, double tol = 1e-6) {
    const std::string pc = temp_path(name + "_cpu"), pg = temp_path(name + "_gpu");
    ASSERT_EQ(s2ft_optimizer_save(cpu_opt_, pc.c_str()), S2FT_OK) << s2ft_last_error();
    ASSERT_EQ(s2ft_optimizer_save(gpu_opt_, pg.c_str()), S2FT_OK) << s2ft_last_error();
    const StateFile c(pc), g(pg);
    EXPECT_EQ(g.meta("step"), c.meta("step"));
    EXPECT_EQ(g.meta("n_params"), c.meta("n_params"));
    for (size_t k = 0; k < specs_.size(); ++k)
      for (const char *suffix : {"m", "v", "momentum", "master"}) {
        const std::string t = "param." + std::to_string(k) + "." + suffix;
        ASSERT_EQ(g.has(t), c.has(t)) << t;
        if (!c.has(t)) continue;
        const std::vector<float> cv = c.tensor(t), gv = g.tensor(t);
        ASSERT_EQ(cv.size(), static_cast<size_t>(specs_[k].rows() * specs_[k].cols())) << t;
        EXPECT_LE(rel_diff(gv, cv), tol) << name << ": " << t;
      }
    std::remove(pc.c_str());
    std::remove(pg.c_str());
  }

  // Replaces the CPU optimizer by a new one over the device's current
  // weights, restored from `path`.
  void reload_cpu_from(const std::string &path) {
    const std::vector<HostMatrix> w = gpu_weights();
    s2ft_optimizer_destroy(cpu_opt_);
    cpu_opt_ = nullptr;
    for (size_t k = 0; k < specs_.size(); ++k) *cpu_w_[k] = w[k];
    cpu_opt_ = make_optimizer(cpu_.ctx, true);
    ASSERT_EQ(s2ft_optimizer_load(cpu_opt_, path.c_str()), S2FT_OK) << s2ft_last_error();
  }

  // Replaces the CUDA optimizer by a new one over the CPU's current weights
  // (uploaded), restored from `path`.
  void reload_gpu_from(const std::string &path) {
    gpu_.sync();
    s2ft_optimizer_destroy(gpu_opt_);
    gpu_opt_ = nullptr;
    for (size_t k = 0; k < specs_.size(); ++k) gpu_w_[k]->upload(*cpu_w_[k]);
    settle();
    gpu_opt_ = make_optimizer(gpu_.ctx, false);
    ASSERT_EQ(s2ft_optimizer_load(gpu_opt_, path.c_str()), S2FT_OK) << s2ft_last_error();
  }

 private:
  s2ft_optimizer *make_optimizer(s2ft_context *ctx, bool on_cpu) {
    s2ft_optimizer *opt = nullptr;
    EXPECT_EQ(s2ft_optimizer_create(ctx, &o_, &opt), S2FT_OK) << s2ft_last_error();
    if (opt == nullptr) return nullptr;
    for (size_t k = 0; k < specs_.size(); ++k) {
      const s2ft_slice s = specs_[k].slice();
      int64_t index = -7;
      s2ft_tensor *w = on_cpu ? &cpu_w_[k]->t : &gpu_w_[k]->t;
      EXPECT_EQ(s2ft_optimizer_add_param(opt, w, &s, &index), S2FT_OK) << s2ft_last_error();
      EXPECT_EQ(index, static_cast<int64_t>(k));
    }
    return opt;
  }

  s2ft_optimizer_options o_;
  std::vector<Spec> specs_;
  Random rng_;
  s2ft_test::Context cpu_;
  GpuContext gpu_;
  std::vector<HostMatrix> initial_;
  std::vector<std::unique_ptr<HostMatrix>> cpu_w_;
  std::vector<std::unique_ptr<DeviceMatrix>> gpu_w_;
  s2ft_optimizer *cpu_opt_ = nullptr, *gpu_opt_ = nullptr;
};

// ---------------------------------------------------------------------------
// Parity over several steps, for every update rule, with and without clipping.

struct Case {
  const char *name;
  int32_t kind;
  double weight_decay, momentum;
  int32_t nesterov;
  double max_grad_norm;
  double lr;
};

class GpuOptimizerParity : public ::testing::TestWithParam<Case> {};

TEST_P(GpuOptimizerParity, MatchesCpuStepByStep) {
  S2FT_REQUIRE_GPU();
  const Case &c = GetParam();
  s2ft_optimizer_options o = options(c.kind);
  o.weight_decay = c.weight_decay;
  o.momentum = c.momentum;
  o.nesterov = c.nesterov;
  o.max_grad_norm = c.max_grad_norm;
  Rig rig(o, mixed_specs(), 1234);
  for (int s = 0; s < 6; ++s) {
    // Alternate the reporting (synchronising) and the asynchronous path.
    rig.good_step(c.lr, s % 2 == 0);
    if (::testing::Test::HasFatalFailure()) return;
    rig.expect_weights_match(std::string(c.name) + " step " + std::to_string(s));
    if (::testing::Test::HasFatalFailure()) return;
  }
  EXPECT_EQ(rig.gpu_steps(), 6);
  EXPECT_EQ(rig.cpu_steps(), 6);
  rig.expect_state_match(c.name);
}

INSTANTIATE_TEST_SUITE_P(
    Rules, GpuOptimizerParity,
    ::testing::Values(Case{"adamw", S2FT_OPTIMIZER_ADAMW, 0.0, 0.0, 0, 0.0, 1e-2},
                      Case{"adamw_decay", S2FT_OPTIMIZER_ADAMW, 0.05, 0.0, 0, 0.0, 1e-2},
                      Case{"adamw_clip", S2FT_OPTIMIZER_ADAMW, 0.01, 0.0, 0, 5.0, 1e-2},
                      Case{"sgd", S2FT_OPTIMIZER_SGD, 0.0, 0.0, 0, 0.0, 5e-2},
                      Case{"sgd_momentum", S2FT_OPTIMIZER_SGD, 0.0, 0.9, 0, 0.0, 5e-2},
                      Case{"sgd_nesterov_decay", S2FT_OPTIMIZER_SGD, 0.01, 0.9, 1, 0.0, 5e-2},
                      Case{"sgd_momentum_clip", S2FT_OPTIMIZER_SGD, 0.01, 0.8, 0, 3.0, 5e-2},
                      Case{"adamw_clip_inactive", S2FT_OPTIMIZER_ADAMW, 0.0, 0.0, 0, 1e6, 1e-2}),
    [](const ::testing::TestParamInfo<Case> &i) { return std::string(i.param.name); });

// ---------------------------------------------------------------------------
// Non-finite gradients.

TEST(GpuOptimizer, NonFiniteNormWithAReportFailsAndChangesNothing) {
  S2FT_REQUIRE_GPU();
  Rig rig(options(S2FT_OPTIMIZER_ADAMW), small_specs(), 77);
  rig.good_step(1e-2, true);
  if (::testing::Test::HasFatalFailure()) return;
  const std::vector<HostMatrix> before = rig.gpu_weights();
  const StepResult r = rig.step(1e-2, true, 1.0, 1, NAN);
  EXPECT_EQ(r.cpu, S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(r.gpu, S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.gpu_error.find("grads[1] holds inf or NaN"), std::string::npos) << r.gpu_error;
  EXPECT_NE(r.gpu_error.find("no parameter was changed"), std::string::npos) << r.gpu_error;
  EXPECT_TRUE(std::isnan(r.gpu_norm));
  const std::vector<HostMatrix> after = rig.gpu_weights();
  for (size_t k = 0; k < before.size(); ++k) EXPECT_TRUE(s2ft_gpu::bit_equal(after[k], before[k])) << "param " << k;
  EXPECT_EQ(rig.gpu_steps(), 1);
  EXPECT_EQ(rig.cpu_steps(), 1);
  // Training goes on as on the CPU, whose failed step did not count either.
  rig.good_step(1e-2, true);
  if (::testing::Test::HasFatalFailure()) return;
  rig.expect_weights_match("after the failed step");
  rig.expect_state_match("nonfinite_report");
}

TEST(GpuOptimizer, ClippingWithANonFiniteNormFails) {
  S2FT_REQUIRE_GPU();
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_SGD);
  o.max_grad_norm = 1.0;
  Rig rig(o, small_specs(), 78);
  // No grad_norm pointer: clipping alone makes the call synchronise and fail.
  const StepResult r = rig.step(1e-2, false, 1.0, 2, INFINITY);
  EXPECT_EQ(r.cpu, S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(r.gpu, S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.gpu_error.find("grads[2]"), std::string::npos) << r.gpu_error;
  EXPECT_EQ(rig.gpu_steps(), 0);
  rig.expect_weights_match("after the failed step");
}

TEST(GpuOptimizer, NonFiniteNormWithoutAReportSkipsTheStepOnTheDevice) {
  S2FT_REQUIRE_GPU();
  for (const int32_t kind : {S2FT_OPTIMIZER_ADAMW, S2FT_OPTIMIZER_SGD}) {
    s2ft_optimizer_options o = options(kind);
    o.momentum = kind == S2FT_OPTIMIZER_SGD ? 0.9 : 0.0;
    Rig rig(o, small_specs(), 79);
    rig.good_step(1e-2, false);
    if (::testing::Test::HasFatalFailure()) return;
    const std::vector<HostMatrix> before = rig.gpu_weights();
    // The CPU fails; the asynchronous CUDA call succeeds and the device skips it.
    const StepResult r = rig.step(1e-2, false, 1.0, 0, INFINITY);
    EXPECT_EQ(r.cpu, S2FT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(r.gpu, S2FT_OK) << r.gpu_error;
    const std::vector<HostMatrix> after = rig.gpu_weights();
    for (size_t k = 0; k < before.size(); ++k) EXPECT_TRUE(s2ft_gpu::bit_equal(after[k], before[k])) << "param " << k;
    // Without asking for the count in between, the next step's number
    // (AdamW's bias correction, SGD's first step) comes from the device.
    rig.good_step(1e-2, false);
    if (::testing::Test::HasFatalFailure()) return;
    rig.expect_weights_match(kind == S2FT_OPTIMIZER_ADAMW ? "adamw after a skipped step" : "sgd after a skipped step");
    EXPECT_EQ(rig.gpu_steps(), 2);
    EXPECT_EQ(rig.cpu_steps(), 2);
    rig.good_step(1e-2, true);
    if (::testing::Test::HasFatalFailure()) return;
    rig.expect_weights_match("and one more");
    rig.expect_state_match(kind == S2FT_OPTIMIZER_ADAMW ? "skip_adamw" : "skip_sgd");
  }
}

// ---------------------------------------------------------------------------
// State files between backends.

TEST(GpuOptimizer, StateSavedOnCudaLoadsOnCpuAndBack) {
  S2FT_REQUIRE_GPU();
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
  o.weight_decay = 0.02;
  Rig rig(o, mixed_specs(), 4321);
  for (int s = 0; s < 3; ++s) {
    rig.good_step(1e-2, s == 1);
    if (::testing::Test::HasFatalFailure()) return;
  }
  // CUDA -> CPU: a CPU optimizer restored from the CUDA state saves the same file.
  const std::string a = temp_path("cuda_state"), a2 = temp_path("cuda_state_via_cpu");
  ASSERT_EQ(s2ft_optimizer_save(rig.gpu_opt(), a.c_str()), S2FT_OK) << s2ft_last_error();
  rig.reload_cpu_from(a);
  if (::testing::Test::HasFatalFailure()) return;
  ASSERT_EQ(s2ft_optimizer_save(rig.cpu_opt(), a2.c_str()), S2FT_OK) << s2ft_last_error();
  EXPECT_EQ(slurp(a2), slurp(a)) << "state files differ after CUDA -> CPU";
  EXPECT_EQ(rig.cpu_steps(), 3);
  // Both resume from the same state.
  for (int s = 0; s < 2; ++s) {
    rig.good_step(1e-2, s == 0);
    if (::testing::Test::HasFatalFailure()) return;
    rig.expect_weights_match("resumed on the CPU, step " + std::to_string(s));
  }
  rig.expect_state_match("resume_cpu");

  // CPU -> CUDA: a CUDA optimizer restored from the CPU state saves the same
  // file, and its 16-bit weights are the CPU's (masters written back).
  const std::string b = temp_path("cpu_state"), b2 = temp_path("cpu_state_via_cuda");
  ASSERT_EQ(s2ft_optimizer_save(rig.cpu_opt(), b.c_str()), S2FT_OK) << s2ft_last_error();
  rig.reload_gpu_from(b);
  if (::testing::Test::HasFatalFailure()) return;
  ASSERT_EQ(s2ft_optimizer_save(rig.gpu_opt(), b2.c_str()), S2FT_OK) << s2ft_last_error();
  EXPECT_EQ(slurp(b2), slurp(b)) << "state files differ after CPU -> CUDA";
  EXPECT_EQ(rig.gpu_steps(), 5);
  rig.expect_weights_match("loaded on CUDA", 0.0);
  for (int s = 0; s < 2; ++s) {
    rig.good_step(1e-2, s == 1);
    if (::testing::Test::HasFatalFailure()) return;
    rig.expect_weights_match("resumed on CUDA, step " + std::to_string(s));
  }
  rig.expect_state_match("resume_cuda");
  for (const std::string &p : {a, a2, b, b2}) std::remove(p.c_str());
}

TEST(GpuOptimizer, LoadWritesMastersBackToTheWeights) {
  S2FT_REQUIRE_GPU();
  Rig rig(options(S2FT_OPTIMIZER_SGD), small_specs(), 99);
  rig.good_step(0.1, true);
  if (::testing::Test::HasFatalFailure()) return;
  const std::string p = temp_path("masters");
  ASSERT_EQ(s2ft_optimizer_save(rig.gpu_opt(), p.c_str()), S2FT_OK) << s2ft_last_error();
  const std::vector<HostMatrix> trained = rig.gpu_weights();
  // Another step moves the weights; loading puts the 16-bit slices back.
  rig.good_step(0.1, false);
  if (::testing::Test::HasFatalFailure()) return;
  ASSERT_EQ(s2ft_optimizer_load(rig.gpu_opt(), p.c_str()), S2FT_OK) << s2ft_last_error();
  EXPECT_EQ(rig.gpu_steps(), 1);
  const std::vector<HostMatrix> loaded = rig.gpu_weights();
  // small_specs: param 1 is bf16, param 2 is f16 (restored); param 0 is f32 (no master: keeps its value).
  EXPECT_TRUE(s2ft_gpu::bit_equal(loaded[1], trained[1]));
  EXPECT_TRUE(s2ft_gpu::bit_equal(loaded[2], trained[2]));
  EXPECT_FALSE(s2ft_gpu::bit_equal(loaded[0], trained[0]));
  std::remove(p.c_str());
}

TEST(GpuOptimizer, DeterministicAcrossRuns) {
  S2FT_REQUIRE_GPU();
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
  o.max_grad_norm = 2.0;
  std::string files[2];
  for (int run = 0; run < 2; ++run) {
    Rig rig(o, mixed_specs(), 555);
    for (int s = 0; s < 3; ++s) {
      rig.good_step(1e-2, s != 1);
      if (::testing::Test::HasFatalFailure()) return;
    }
    const std::string p = temp_path("det" + std::to_string(run));
    ASSERT_EQ(s2ft_optimizer_save(rig.gpu_opt(), p.c_str()), S2FT_OK) << s2ft_last_error();
    files[run] = slurp(p);
    std::remove(p.c_str());
  }
  EXPECT_FALSE(files[0].empty());
  EXPECT_EQ(files[0], files[1]);
}

// ---------------------------------------------------------------------------
// An optimizer without parameters, and the errors.

TEST(GpuOptimizer, NoParametersStillCountsSteps) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
  s2ft_optimizer *opt = nullptr;
  ASSERT_S2FT_OK(s2ft_optimizer_create(g.ctx, &o, &opt));
  ASSERT_S2FT_OK(s2ft_optimizer_step(opt, 1e-3, nullptr, 0, nullptr));
  double norm = -1.0;
  ASSERT_S2FT_OK(s2ft_optimizer_step(opt, 1e-3, nullptr, 0, &norm));
  EXPECT_EQ(norm, 0.0);
  int64_t n = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_step_count(opt, &n));
  EXPECT_EQ(n, 2);
  s2ft_optimizer_destroy(opt);
}

class GpuOptimizerErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!s2ft_gpu::gpu_unavailable_reason().empty()) return;
    g_ = std::make_unique<GpuContext>();
    s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
    ASSERT_S2FT_OK(s2ft_optimizer_create(g_->ctx, &o, &opt_));
    Random rng(3);
    HostMatrix w(S2FT_BF16, 8, 6);
    w.fill_random(rng);
    w_ = std::make_unique<DeviceMatrix>(w);
    settle();
  }
  void TearDown() override {
    if (g_) g_->sync();
    s2ft_optimizer_destroy(opt_);
  }
  std::unique_ptr<GpuContext> g_;
  s2ft_optimizer *opt_ = nullptr;
  std::unique_ptr<DeviceMatrix> w_;
  const s2ft_slice slice_{S2FT_AXIS_COLUMNS, 1, 2, nullptr};  // grads are [8, 2]
};

TEST_F(GpuOptimizerErrors, HostWeightIsRefused) {
  S2FT_REQUIRE_GPU();
  HostMatrix w(S2FT_F32, 8, 6);
  int64_t index = -1;
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_param(opt_, &w.t, &slice_, &index), S2FT_ERR_DEVICE, "weight");
  EXPECT_EQ(index, -1);
}

TEST_F(GpuOptimizerErrors, HostMemoryClaimingToBeCudaIsRefused) {
  S2FT_REQUIRE_GPU();
  HostMatrix w(S2FT_F32, 8, 6);
  w.t.device = s2ft_device{S2FT_DEVICE_CUDA, 0};
  int64_t index = -1;
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_param(opt_, &w.t, &slice_, &index), S2FT_ERR_DEVICE, "host memory");
}

TEST_F(GpuOptimizerErrors, HostGradientIsRefused) {
  S2FT_REQUIRE_GPU();
  int64_t index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt_, &w_->t, &slice_, &index));
  HostMatrix grad(S2FT_F32, 8, 2);
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, 1e-3, &grad.t, 1, nullptr), S2FT_ERR_DEVICE, "grads[0]");
  int64_t n = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_step_count(opt_, &n));
  EXPECT_EQ(n, 0);
}

TEST_F(GpuOptimizerErrors, GradientOfAnotherHalfDtypeIsRefused) {
  S2FT_REQUIRE_GPU();
  int64_t index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt_, &w_->t, &slice_, &index));
  DeviceMatrix grad(S2FT_F16, 8, 2);
  settle();
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, 1e-3, &grad.t, 1, nullptr), S2FT_ERR_DTYPE, "grads[0]");
}

TEST_F(GpuOptimizerErrors, GradientOfTheWrongShapeIsRefused) {
  S2FT_REQUIRE_GPU();
  int64_t index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt_, &w_->t, &slice_, &index));
  DeviceMatrix grad(S2FT_F32, 8, 3);
  settle();
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, 1e-3, &grad.t, 1, nullptr), S2FT_ERR_SHAPE, "grads[0]");
}

TEST_F(GpuOptimizerErrors, AddingAfterAnAsynchronousStepIsRefused) {
  S2FT_REQUIRE_GPU();
  int64_t index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt_, &w_->t, &slice_, &index));
  Random rng(4);
  HostMatrix gh(S2FT_F32, 8, 2);
  gh.fill_random(rng);
  DeviceMatrix grad(gh);
  settle();
  ASSERT_S2FT_OK(s2ft_optimizer_step(opt_, 1e-3, &grad.t, 1, nullptr));
  const s2ft_slice other{S2FT_AXIS_COLUMNS, 4, 1, nullptr};
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_param(opt_, &w_->t, &other, &index), S2FT_ERR_STATE,
                    "before the first step (the optimizer has taken 1)");
}

TEST_F(GpuOptimizerErrors, AddingAfterOnlySkippedStepsIsAllowedAsOnTheCpu) {
  S2FT_REQUIRE_GPU();
  int64_t index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt_, &w_->t, &slice_, &index));
  HostMatrix gh(S2FT_F32, 8, 2);
  for (int64_t i = 0; i < 8; ++i)
    for (int64_t j = 0; j < 2; ++j) gh.set(i, j, i == 3 ? NAN : 0.5f);
  DeviceMatrix grad(gh);
  settle();
  ASSERT_S2FT_OK(s2ft_optimizer_step(opt_, 1e-3, &grad.t, 1, nullptr));  // skipped on the device
  const s2ft_slice other{S2FT_AXIS_COLUMNS, 4, 1, nullptr};
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt_, &w_->t, &other, &index));
  EXPECT_EQ(index, 1);
}

TEST_F(GpuOptimizerErrors, OverlappingSliceIsRefused) {
  S2FT_REQUIRE_GPU();
  int64_t index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt_, &w_->t, &slice_, &index));
  const s2ft_slice again{S2FT_AXIS_COLUMNS, 2, 2, nullptr};
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_param(opt_, &w_->t, &again, &index), S2FT_ERR_INVALID_ARGUMENT,
                    "overlaps parameter 0");
}

}  // namespace
