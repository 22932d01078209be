// The optimizer on slices, through the public C API only: AdamW and SGD
// against a float64 reference, column/row and contiguous/indexed slices,
// 16-bit weights with an f32 master, exact resume from a saved state,
// hostile state files and one test per error path.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "s2ft/s2ft.h"
#include "support/test_util.hpp"

namespace {

using s2ft_test::HostMatrix;
using s2ft_test::Random;

const double kInf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------------------
// Parameters: a weight plus the lines of it that are trained.

struct Param {
  HostMatrix w;
  int32_t axis = S2FT_AXIS_COLUMNS;
  std::vector<int64_t> lines;  // weight columns (or rows) in slice order
  bool indexed = false;

  Param(int32_t dtype, int64_t out, int64_t in, int32_t ax, std::vector<int64_t> l, bool idx, Random &rng)
      : w(dtype, out, in), axis(ax), lines(std::move(l)), indexed(idx) {
    w.fill_random(rng);
  }
  int64_t rows() const { return axis == S2FT_AXIS_COLUMNS ? w.rows : static_cast<int64_t>(lines.size()); }
  int64_t cols() const { return axis == S2FT_AXIS_COLUMNS ? static_cast<int64_t>(lines.size()) : w.cols; }
  s2ft_slice slice() const {
    s2ft_slice s{};
    s.axis = axis;
    s.begin = lines.front();
    s.count = static_cast<int64_t>(lines.size());
    s.indices = indexed ? lines.data() : nullptr;
    return s;
  }
  int64_t wr(int64_t i) const { return axis == S2FT_AXIS_ROWS ? lines[static_cast<size_t>(i)] : i; }
  int64_t wc(int64_t j) const { return axis == S2FT_AXIS_COLUMNS ? lines[static_cast<size_t>(j)] : j; }
  std::vector<double> slice_values() const {
    std::vector<double> v;
    for (int64_t i = 0; i < rows(); ++i)
      for (int64_t j = 0; j < cols(); ++j) v.push_back(w.get(wr(i), wc(j)));
    return v;
  }
  bool in_slice(int64_t r, int64_t c) const {
    const int64_t line = axis == S2FT_AXIS_COLUMNS ? c : r;
    for (int64_t l : lines)
      if (l == line) return true;
    return false;
  }
};

std::vector<int64_t> range(int64_t begin, int64_t count) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < count; ++i) v.push_back(begin + i);
  return v;
}

// ---------------------------------------------------------------------------
// The float64 reference (PyTorch's AdamW, SGD and clip_grad_norm_).

struct RefParam {
  std::vector<double> p, m, v, buf;
};

struct Reference {
  s2ft_optimizer_options o;
  int64_t t = 0;
  std::vector<RefParam> params;

  Reference(const s2ft_optimizer_options &opts, const std::vector<std::unique_ptr<Param>> &ps) : o(opts) {
    for (const auto &p : ps) {
      RefParam r;
      r.p = p->slice_values();
      r.m.assign(r.p.size(), 0.0);
      r.v.assign(r.p.size(), 0.0);
      r.buf.assign(r.p.size(), 0.0);
      params.push_back(r);
    }
  }

  double step(double lr, const std::vector<std::vector<double>> &grads) {
    ++t;
    double total = 0.0;
    for (const auto &g : grads)
      for (double x : g) total += x * x;
    const double norm = std::sqrt(total);
    double scale = 1.0;
    if (o.max_grad_norm > 0.0 && norm > o.max_grad_norm) scale = o.max_grad_norm / (norm + 1e-6);
    for (size_t k = 0; k < params.size(); ++k) {
      RefParam &r = params[k];
      for (size_t e = 0; e < r.p.size(); ++e) {
        double g = grads[k][e] * scale;
        if (o.kind == S2FT_OPTIMIZER_ADAMW) {
          r.p[e] *= 1.0 - lr * o.weight_decay;
          r.m[e] = o.beta1 * r.m[e] + (1.0 - o.beta1) * g;
          r.v[e] = o.beta2 * r.v[e] + (1.0 - o.beta2) * g * g;
          const double mhat = r.m[e] / (1.0 - std::pow(o.beta1, static_cast<double>(t)));
          const double vhat = r.v[e] / (1.0 - std::pow(o.beta2, static_cast<double>(t)));
          r.p[e] -= lr * mhat / (std::sqrt(vhat) + o.eps);
        } else {
          g += o.weight_decay * r.p[e];
          if (o.momentum != 0.0) {
            r.buf[e] = t == 1 ? g : o.momentum * r.buf[e] + g;
            g = o.nesterov ? g + o.momentum * r.buf[e] : r.buf[e];
          }
          r.p[e] -= lr * g;
        }
      }
    }
    return norm;
  }
};

// ---------------------------------------------------------------------------
// Fixture: a CPU context, and helpers to run an optimizer over parameters.

class Optimizer : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_S2FT_OK(s2ft_context_create(nullptr, &ctx_)); }
  void TearDown() override {
    for (auto *o : opts_) s2ft_optimizer_destroy(o);
    s2ft_context_destroy(ctx_);
  }

  s2ft_optimizer_options options(int32_t kind) {
    s2ft_optimizer_options o;
    EXPECT_EQ(s2ft_optimizer_options_init(&o, S2FT_OPTIMIZER_OPTIONS_VERSION), S2FT_OK);
    o.kind = kind;
    return o;
  }

  s2ft_optimizer *make(const s2ft_optimizer_options &o) {
    s2ft_optimizer *opt = nullptr;
    EXPECT_EQ(s2ft_optimizer_create(ctx_, &o, &opt), S2FT_OK) << s2ft_last_error();
    opts_.push_back(opt);
    return opt;
  }

  // Creates an optimizer and registers every parameter (in order).
  s2ft_optimizer *make(const s2ft_optimizer_options &o, std::vector<std::unique_ptr<Param>> &ps) {
    s2ft_optimizer *opt = make(o);
    for (size_t i = 0; i < ps.size(); ++i) {
      const s2ft_slice s = ps[i]->slice();
      int64_t index = -7;
      EXPECT_EQ(s2ft_optimizer_add_param(opt, &ps[i]->w.t, &s, &index), S2FT_OK) << s2ft_last_error();
      EXPECT_EQ(index, static_cast<int64_t>(i));
    }
    return opt;
  }

  // Random f32 gradients for every parameter, in descriptor form and as doubles.
  struct Grads {
    std::vector<HostMatrix> m;
    std::vector<s2ft_tensor> t;
    std::vector<std::vector<double>> d;
  };
  static Grads grads_for(const std::vector<std::unique_ptr<Param>> &ps, Random &rng, double scale = 1.0,
                         int32_t dtype = S2FT_F32) {
    Grads g;
    for (const auto &p : ps) {
      g.m.emplace_back(dtype, p->rows(), p->cols());
      g.m.back().fill_random(rng, scale);
    }
    for (auto &m : g.m) {
      g.t.push_back(m.t);
      g.d.push_back(m.to_double());
    }
    return g;
  }

  // Runs `steps` steps on the library and the reference with the same
  // gradients and checks weights (and the updates) after every step.
  void run_against_reference(const s2ft_optimizer_options &o, std::vector<std::unique_ptr<Param>> &ps, int steps,
                             double lr, uint64_t seed, double tol = 1e-5) {
    s2ft_optimizer *opt = make(o, ps);
    Reference ref(o, ps);
    Random rng(seed);
    std::vector<HostMatrix> before;
    for (const auto &p : ps) before.push_back(p->w);
    for (int s = 0; s < steps; ++s) {
      std::vector<std::vector<double>> prev;
      for (const auto &p : ps) prev.push_back(p->slice_values());
      Grads g = grads_for(ps, rng);
      double norm = -1.0;
      ASSERT_S2FT_OK(s2ft_optimizer_step(opt, lr, g.t.data(), static_cast<int64_t>(g.t.size()), &norm));
      const double ref_norm = ref.step(lr, g.d);
      EXPECT_NEAR(norm, ref_norm, 1e-12 * ref_norm) << "step " << s;
      for (size_t k = 0; k < ps.size(); ++k) {
        const std::vector<double> got = ps[k]->slice_values();
        EXPECT_LT(s2ft_test::rel_error(got, ref.params[k].p), tol) << "param " << k << " step " << s;
        // The update itself, so that a small error in it cannot hide behind |p|.
        std::vector<double> got_delta, ref_delta;
        for (size_t e = 0; e < got.size(); ++e) {
          got_delta.push_back(got[e] - prev[k][e]);
          ref_delta.push_back(ref.params[k].p[e] - prev[k][e]);
        }
        EXPECT_LT(s2ft_test::rel_error(got_delta, ref_delta), ps[k]->w.dtype == S2FT_F32 ? 1e-3 : 0.2)
            << "param " << k << " step " << s;
        // Ground truth for the reference: what the weight holds now (a
        // 16-bit weight is compared through its rounding each step).
        if (ps[k]->w.dtype == S2FT_F32) ref.params[k].p = got;
      }
    }
    int64_t count = -1;
    ASSERT_S2FT_OK(s2ft_optimizer_step_count(opt, &count));
    EXPECT_EQ(count, steps);
    // Elements outside every slice are bit-identical.
    for (size_t k = 0; k < ps.size(); ++k)
      for (int64_t r = 0; r < ps[k]->w.rows; ++r)
        for (int64_t c = 0; c < ps[k]->w.cols; ++c)
          if (!ps[k]->in_slice(r, c)) {
            const size_t e = static_cast<size_t>(r * ps[k]->w.cols + c) * ps[k]->w.elem();
            ASSERT_EQ(std::memcmp(&ps[k]->w.bytes[e], &before[k].bytes[e], ps[k]->w.elem()), 0)
                << "param " << k << " element (" << r << ", " << c << ") outside the slice changed";
          }
  }

  std::string temp_path(const std::string &name) {
    return ::testing::TempDir() + "s2ft_opt_" + std::to_string(getpid()) + "_" + name;
  }

  s2ft_context *ctx_ = nullptr;
  std::vector<s2ft_optimizer *> opts_;
};

std::vector<std::unique_ptr<Param>> mixed_params(int32_t dtype, Random &rng) {
  std::vector<std::unique_ptr<Param>> ps;
  ps.push_back(std::make_unique<Param>(dtype, 7, 13, S2FT_AXIS_COLUMNS, range(3, 5), false, rng));
  ps.push_back(std::make_unique<Param>(dtype, 11, 6, S2FT_AXIS_ROWS, std::vector<int64_t>{9, 2, 5}, true, rng));
  ps.push_back(std::make_unique<Param>(dtype, 5, 9, S2FT_AXIS_COLUMNS, std::vector<int64_t>{8, 0, 4, 1}, true, rng));
  ps.push_back(std::make_unique<Param>(dtype, 10, 3, S2FT_AXIS_ROWS, range(4, 6), false, rng));
  return ps;
}

// ---------------------------------------------------------------------------
// Options and creation

TEST_F(Optimizer, OptionsInitGivesDocumentedDefaults) {
  s2ft_optimizer_options o;
  std::memset(&o, 0x7f, sizeof o);
  ASSERT_S2FT_OK(s2ft_optimizer_options_init(&o, S2FT_OPTIMIZER_OPTIONS_VERSION));
  EXPECT_EQ(o.version, static_cast<uint32_t>(S2FT_OPTIMIZER_OPTIONS_VERSION));
  EXPECT_EQ(o.kind, S2FT_OPTIMIZER_ADAMW);
  EXPECT_EQ(o.beta1, 0.9);
  EXPECT_EQ(o.beta2, 0.999);
  EXPECT_EQ(o.eps, 1e-8);
  EXPECT_EQ(o.weight_decay, 0.0);
  EXPECT_EQ(o.momentum, 0.0);
  EXPECT_EQ(o.nesterov, 0);
  EXPECT_EQ(o.max_grad_norm, 0.0);
}

TEST_F(Optimizer, NewOptimizerHasNoSteps) {
  s2ft_optimizer *opt = make(options(S2FT_OPTIMIZER_ADAMW));
  int64_t n = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_step_count(opt, &n));
  EXPECT_EQ(n, 0);
  s2ft_optimizer_destroy(nullptr);  // no-op
}

// ---------------------------------------------------------------------------
// Numerics against the float64 reference

TEST_F(Optimizer, AdamWOneStep) {
  Random rng(1);
  std::vector<std::unique_ptr<Param>> ps;
  ps.push_back(std::make_unique<Param>(S2FT_F32, 9, 14, S2FT_AXIS_COLUMNS, range(2, 5), false, rng));
  run_against_reference(options(S2FT_OPTIMIZER_ADAMW), ps, 1, 1e-2, 11);
}

TEST_F(Optimizer, AdamWSeveralStepsMixedSlices) {
  Random rng(2);
  auto ps = mixed_params(S2FT_F32, rng);
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
  o.beta1 = 0.8;
  o.beta2 = 0.95;
  o.eps = 1e-6;
  run_against_reference(o, ps, 6, 3e-2, 12);
}

TEST_F(Optimizer, AdamWDecoupledWeightDecay) {
  Random rng(3);
  auto ps = mixed_params(S2FT_F32, rng);
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
  o.weight_decay = 0.1;
  run_against_reference(o, ps, 4, 5e-2, 13);
}

TEST_F(Optimizer, AdamWZeroBetas) {
  Random rng(4);
  auto ps = mixed_params(S2FT_F32, rng);
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
  o.beta1 = 0.0;
  o.beta2 = 0.0;
  run_against_reference(o, ps, 3, 1e-2, 14);
}

TEST_F(Optimizer, SgdPlain) {
  Random rng(5);
  auto ps = mixed_params(S2FT_F32, rng);
  run_against_reference(options(S2FT_OPTIMIZER_SGD), ps, 4, 0.1, 15);
}

TEST_F(Optimizer, SgdWeightDecay) {
  Random rng(6);
  auto ps = mixed_params(S2FT_F32, rng);
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_SGD);
  o.weight_decay = 0.05;
  run_against_reference(o, ps, 4, 0.1, 16);
}

TEST_F(Optimizer, SgdMomentum) {
  Random rng(7);
  auto ps = mixed_params(S2FT_F32, rng);
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_SGD);
  o.momentum = 0.9;
  o.weight_decay = 0.01;
  run_against_reference(o, ps, 5, 0.05, 17);
}

TEST_F(Optimizer, SgdNesterov) {
  Random rng(8);
  auto ps = mixed_params(S2FT_F32, rng);
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_SGD);
  o.momentum = 0.8;
  o.nesterov = 1;
  run_against_reference(o, ps, 5, 0.05, 18);
}

TEST_F(Optimizer, ClippedStepsAdamW) {
  Random rng(9);
  auto ps = mixed_params(S2FT_F32, rng);
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
  o.max_grad_norm = 0.5;  // the random gradients have norm ~5
  o.weight_decay = 0.02;
  run_against_reference(o, ps, 4, 1e-2, 19);
}

TEST_F(Optimizer, ClippedStepsSgd) {
  // SGD shows the scale directly in the update.
  Random rng(10);
  auto ps = mixed_params(S2FT_F32, rng);
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_SGD);
  o.max_grad_norm = 0.25;
  o.momentum = 0.5;
  run_against_reference(o, ps, 4, 0.5, 20);
}

TEST_F(Optimizer, ClipAboveTheNormChangesNothing) {
  Random rng(11);
  auto ps = mixed_params(S2FT_F32, rng);
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_SGD);
  o.max_grad_norm = 1e6;
  run_against_reference(o, ps, 2, 0.5, 21);
}

TEST_F(Optimizer, SliceShapesKOneAndKAll) {
  Random rng(12);
  std::vector<std::unique_ptr<Param>> ps;
  ps.push_back(std::make_unique<Param>(S2FT_F32, 6, 5, S2FT_AXIS_COLUMNS, range(4, 1), false, rng));  // k = 1, last
  ps.push_back(std::make_unique<Param>(S2FT_F32, 6, 5, S2FT_AXIS_COLUMNS, range(0, 5), false, rng));  // k = all
  ps.push_back(std::make_unique<Param>(S2FT_F32, 4, 7, S2FT_AXIS_ROWS, range(0, 4), false, rng));     // all rows
  ps.push_back(std::make_unique<Param>(S2FT_F32, 4, 7, S2FT_AXIS_ROWS, std::vector<int64_t>{3}, true, rng));
  ps.push_back(std::make_unique<Param>(S2FT_F32, 1, 1, S2FT_AXIS_COLUMNS, range(0, 1), false, rng));
  run_against_reference(options(S2FT_OPTIMIZER_ADAMW), ps, 3, 1e-2, 22);
}

TEST_F(Optimizer, TwoDisjointSlicesOfOneWeight) {
  // Column lines 0-2 and 5-6 of the same weight as two parameters.
  Random rng(13);
  std::vector<std::unique_ptr<Param>> ps;
  ps.push_back(std::make_unique<Param>(S2FT_F32, 4, 8, S2FT_AXIS_COLUMNS, range(0, 3), false, rng));
  s2ft_optimizer *opt = make(options(S2FT_OPTIMIZER_SGD), ps);
  s2ft_slice s{S2FT_AXIS_COLUMNS, 5, 2, nullptr};
  int64_t index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt, &ps[0]->w.t, &s, &index));
  EXPECT_EQ(index, 1);
  HostMatrix g0(S2FT_F32, 4, 3), g1(S2FT_F32, 4, 2);
  g0.fill_random(rng);
  g1.fill_random(rng);
  const HostMatrix before = ps[0]->w;
  s2ft_tensor g[2] = {g0.t, g1.t};
  ASSERT_S2FT_OK(s2ft_optimizer_step(opt, 0.5, g, 2, nullptr));
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t c = 0; c < 8; ++c) {
      double want = before.get(r, c);
      if (c < 3) want -= 0.5 * g0.get(r, c);
      if (c >= 5 && c < 7) want -= 0.5 * g1.get(r, c - 5);
      EXPECT_NEAR(ps[0]->w.get(r, c), want, 1e-6) << r << "," << c;
    }
}

TEST_F(Optimizer, StridedAndLowPrecisionGradients) {
  // The gradient of a bf16 weight may be bf16; any gradient may be strided.
  Random rng(14);
  std::vector<std::unique_ptr<Param>> ps;
  ps.push_back(std::make_unique<Param>(S2FT_F32, 5, 9, S2FT_AXIS_COLUMNS, range(1, 3), false, rng));
  ps.push_back(std::make_unique<Param>(S2FT_BF16, 6, 4, S2FT_AXIS_ROWS, std::vector<int64_t>{5, 0}, true, rng));
  s2ft_optimizer *opt = make(options(S2FT_OPTIMIZER_SGD), ps);
  // grads[0]: [5, 3] as a transposed view of a [3, 5] buffer.
  HostMatrix t0(S2FT_F32, 3, 5);
  t0.fill_random(rng);
  s2ft_tensor g0 = t0.t;
  g0.shape[0] = 5;
  g0.shape[1] = 3;
  g0.strides[0] = 1;
  g0.strides[1] = 5;
  // grads[1]: [2, 4] bf16 inside a [2, 7] buffer (padded rows).
  HostMatrix t1(S2FT_BF16, 2, 7);
  t1.fill_random(rng);
  s2ft_tensor g1 = t1.t;
  g1.shape[1] = 4;
  std::vector<double> w0 = ps[0]->slice_values(), w1 = ps[1]->slice_values();
  s2ft_tensor g[2] = {g0, g1};
  ASSERT_S2FT_OK(s2ft_optimizer_step(opt, 0.25, g, 2, nullptr));
  const std::vector<double> a = ps[0]->slice_values(), b = ps[1]->slice_values();
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 3; ++j)
      EXPECT_NEAR(a[static_cast<size_t>(i * 3 + j)], w0[static_cast<size_t>(i * 3 + j)] - 0.25 * t0.get(j, i), 1e-6);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 4; ++j) {
      const float want = static_cast<float>(w1[static_cast<size_t>(i * 4 + j)] - 0.25 * t1.get(i, j));
      EXPECT_EQ(b[static_cast<size_t>(i * 4 + j)], s2ft_test::from_bf16(s2ft_test::to_bf16(want)));
    }
}

// ---------------------------------------------------------------------------
// 16-bit weights and the f32 master

TEST_F(Optimizer, Bf16AdamWTracksReference) {
  Random rng(15);
  auto ps = mixed_params(S2FT_BF16, rng);
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
  o.weight_decay = 0.01;
  run_against_reference(o, ps, 5, 2e-2, 23, 1e-2);
}

TEST_F(Optimizer, F16SgdMomentumTracksReference) {
  Random rng(16);
  auto ps = mixed_params(S2FT_F16, rng);
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_SGD);
  o.momentum = 0.9;
  run_against_reference(o, ps, 5, 2e-2, 24, 2e-3);
}

TEST_F(Optimizer, Bf16MasterAccumulatesTinySteps) {
  // Weights in [1, 2): one bf16 ulp is 2^-7. Each step moves a weight by at
  // most 1.5e-4, far below half an ulp, so updating the bf16 weight directly
  // would never change it; the f32 master accumulates the steps.
  Random rng(17);
  std::vector<std::unique_ptr<Param>> ps;
  ps.push_back(std::make_unique<Param>(S2FT_BF16, 6, 10, S2FT_AXIS_COLUMNS, std::vector<int64_t>{7, 2, 3}, true, rng));
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t c = 0; c < 10; ++c) ps[0]->w.set(r, c, static_cast<float>(1.25 + 0.5 * rng.uniform(0, 1)));
  const std::vector<double> w0 = ps[0]->slice_values();
  s2ft_optimizer *opt = make(options(S2FT_OPTIMIZER_SGD), ps);
  HostMatrix g(S2FT_F32, 6, 3);
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j < 3; ++j) g.set(i, j, static_cast<float>(0.5 + rng.uniform(0, 1)));
  const double lr = 1e-4;
  const int steps = 300;
  for (int s = 0; s < steps; ++s) ASSERT_S2FT_OK(s2ft_optimizer_step(opt, lr, &g.t, 1, nullptr));
  const std::vector<double> w = ps[0]->slice_values();
  int moved = 0;
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j < 3; ++j) {
      const size_t e = static_cast<size_t>(i * 3 + j);
      const double exact = w0[e] - steps * lr * static_cast<double>(g.get(i, j));
      const double ulp = std::ldexp(1.0, -7);
      EXPECT_NEAR(w[e], exact, 0.5 * ulp + 1e-4) << "element " << e;
      moved += w[e] != w0[e];
    }
  EXPECT_EQ(moved, 18) << "every weight moved by several ulps";
}

// ---------------------------------------------------------------------------
// Save and load

struct ResumeCase {
  int32_t kind;
  double momentum;
  int32_t dtype;
};

class OptimizerResume : public Optimizer, public ::testing::WithParamInterface<ResumeCase> {};

TEST_P(OptimizerResume, SaveLoadResumesBitExactly) {
  const ResumeCase rc = GetParam();
  s2ft_optimizer_options o = options(rc.kind);
  o.momentum = rc.momentum;
  o.weight_decay = 0.01;
  o.max_grad_norm = 2.0;
  Random rng(30);
  auto run = mixed_params(rc.dtype, rng);
  run.push_back(std::make_unique<Param>(S2FT_F32, 3, 4, S2FT_AXIS_COLUMNS, range(1, 2), false, rng));
  // A copy of the initial weights (for 16-bit weights the master restores the slice).
  std::vector<std::unique_ptr<Param>> resumed;
  for (const auto &p : run) resumed.push_back(std::make_unique<Param>(*p));

  s2ft_optimizer *a = make(o, run);
  Random grng(31);
  std::vector<Grads> grads;
  for (int s = 0; s < 6; ++s) grads.push_back(grads_for(run, grng));
  for (int s = 0; s < 3; ++s) ASSERT_S2FT_OK(s2ft_optimizer_step(a, 1e-2, grads[static_cast<size_t>(s)].t.data(), 5, nullptr));
  const std::string path = temp_path("resume.safetensors");
  ASSERT_S2FT_OK(s2ft_optimizer_save(a, path.c_str()));
  // f32 weights are their own state: the caller checkpoints them.
  for (size_t k = 0; k < run.size(); ++k)
    if (run[k]->w.dtype == S2FT_F32) resumed[k]->w = run[k]->w;
  for (int s = 3; s < 6; ++s) ASSERT_S2FT_OK(s2ft_optimizer_step(a, 1e-2, grads[static_cast<size_t>(s)].t.data(), 5, nullptr));

  s2ft_optimizer *b = make(o, resumed);
  ASSERT_S2FT_OK(s2ft_optimizer_load(b, path.c_str()));
  int64_t count = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_step_count(b, &count));
  EXPECT_EQ(count, 3);
  for (int s = 3; s < 6; ++s) ASSERT_S2FT_OK(s2ft_optimizer_step(b, 1e-2, grads[static_cast<size_t>(s)].t.data(), 5, nullptr));
  for (size_t k = 0; k < run.size(); ++k)
    EXPECT_EQ(resumed[k]->w.bytes, run[k]->w.bytes) << "param " << k << " differs from the uninterrupted run";
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(Kinds, OptimizerResume,
                         ::testing::Values(ResumeCase{S2FT_OPTIMIZER_ADAMW, 0.0, S2FT_F32},
                                           ResumeCase{S2FT_OPTIMIZER_ADAMW, 0.0, S2FT_BF16},
                                           ResumeCase{S2FT_OPTIMIZER_SGD, 0.9, S2FT_F16},
                                           ResumeCase{S2FT_OPTIMIZER_SGD, 0.0, S2FT_BF16}),
                         [](const ::testing::TestParamInfo<ResumeCase> &info) {
                           const ResumeCase &c = info.param;
                           return std::string(c.kind == S2FT_OPTIMIZER_ADAMW ? "AdamW" : "Sgd") +
                                  (c.momentum != 0.0 ? "Momentum" : "") + "_" + s2ft_test::dtype_label(c.dtype);
                         });

TEST_F(Optimizer, LoadWritesMastersIntoWeights) {
  Random rng(32);
  std::vector<std::unique_ptr<Param>> ps;
  ps.push_back(std::make_unique<Param>(S2FT_BF16, 5, 8, S2FT_AXIS_COLUMNS, range(2, 3), false, rng));
  Param original = *ps[0];
  s2ft_optimizer *a = make(options(S2FT_OPTIMIZER_ADAMW), ps);
  HostMatrix g(S2FT_F32, 5, 3);
  g.fill_random(rng);
  for (int s = 0; s < 4; ++s) ASSERT_S2FT_OK(s2ft_optimizer_step(a, 5e-2, &g.t, 1, nullptr));
  ASSERT_NE(ps[0]->w.bytes, original.w.bytes);
  const std::string path = temp_path("masters.safetensors");
  ASSERT_S2FT_OK(s2ft_optimizer_save(a, path.c_str()));
  std::vector<std::unique_ptr<Param>> fresh;
  fresh.push_back(std::make_unique<Param>(original));
  s2ft_optimizer *b = make(options(S2FT_OPTIMIZER_ADAMW), fresh);
  ASSERT_S2FT_OK(s2ft_optimizer_load(b, path.c_str()));
  EXPECT_EQ(fresh[0]->w.bytes, ps[0]->w.bytes);
  std::remove(path.c_str());
}

// A safetensors file written by hand, so every field can be made wrong.
struct StateFile {
  std::map<std::string, std::string> meta;
  struct Tensor {
    std::string name, dtype;
    std::vector<int64_t> shape;
    float value = 0.5f;
  };
  std::vector<Tensor> tensors;

  std::string bytes() const {
    std::string header = "{\"__metadata__\":{";
    bool first = true;
    for (const auto &kv : meta) {
      header += (first ? "\"" : ",\"") + kv.first + "\":\"" + kv.second + "\"";
      first = false;
    }
    header += "}";
    std::string data;
    for (const auto &t : tensors) {
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;
      const size_t esize = t.dtype == "F32" ? 4 : 2;
      const size_t begin = data.size();
      for (int64_t i = 0; i < n; ++i) {
        if (esize == 4) data.append(reinterpret_cast<const char *>(&t.value), 4);
        else data.append(2, '\0');
      }
      header += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
      for (size_t i = 0; i < t.shape.size(); ++i) header += (i ? "," : "") + std::to_string(t.shape[i]);
      header += "],\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(data.size()) + "]}";
    }
    header += "}";
    std::string out;
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(static_cast<uint64_t>(header.size()) >> (8 * i)));
    return out + header + data;
  }
};

// Valid AdamW state for one f32 parameter whose slice is [4, 2] (columns).
StateFile adamw_state() {
  StateFile f;
  f.meta = {{"format", "s2ft-optimizer"}, {"version", "1"}, {"kind", "adamw"},    {"step", "2"},
            {"n_params", "1"},            {"beta1", "0.9"}, {"beta2", "0.999"},   {"eps", "1e-08"},
            {"weight_decay", "0"},        {"momentum", "0"}, {"nesterov", "0"},   {"max_grad_norm", "0"},
            {"param.0.axis", "columns"}};
  f.tensors = {{"param.0.m", "F32", {4, 2}, 0.25f}, {"param.0.v", "F32", {4, 2}, 0.5f}};
  return f;
}

class OptimizerLoad : public Optimizer {
 protected:
  void SetUp() override {
    Optimizer::SetUp();
    Random rng(40);
    ps_.push_back(std::make_unique<Param>(S2FT_F32, 4, 6, S2FT_AXIS_COLUMNS, range(1, 2), false, rng));
    opt_ = make(options(S2FT_OPTIMIZER_ADAMW), ps_);
    path_ = temp_path("state.safetensors");
  }
  void TearDown() override {
    std::remove(path_.c_str());
    Optimizer::TearDown();
  }
  s2ft_status load(const StateFile &f) { return load_bytes(f.bytes()); }
  s2ft_status load_bytes(const std::string &bytes) {
    {
      std::ofstream out(path_, std::ios::binary | std::ios::trunc);
      out << bytes;
    }
    s2ft_clear_error();
    return s2ft_optimizer_load(opt_, path_.c_str());
  }
  // A rejected file must leave the step count and the weight as they were.
  void expect_rejected(const StateFile &f, const char *needle) {
    const std::vector<uint8_t> before = ps_[0]->w.bytes;
    EXPECT_EQ(load(f), S2FT_ERR_FORMAT) << s2ft_last_error();
    EXPECT_NE(std::string(s2ft_last_error()).find(needle), std::string::npos)
        << "expected '" << needle << "' in: " << s2ft_last_error();
    int64_t n = -1;
    EXPECT_EQ(s2ft_optimizer_step_count(opt_, &n), S2FT_OK);
    EXPECT_EQ(n, 0);
    EXPECT_EQ(ps_[0]->w.bytes, before);
  }

  std::vector<std::unique_ptr<Param>> ps_;
  s2ft_optimizer *opt_ = nullptr;
  std::string path_;
};

TEST_F(OptimizerLoad, HandWrittenValidFileLoads) {
  ASSERT_EQ(load(adamw_state()), S2FT_OK) << s2ft_last_error();
  int64_t n = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_step_count(opt_, &n));
  EXPECT_EQ(n, 2);
  // With m = 0.25 and v = 0.5 loaded, one step with zero decay and g = 0 is
  // m' = 0.225, v' = 0.4995 at t = 3: a known update.
  HostMatrix g(S2FT_F32, 4, 2);
  const std::vector<double> before = ps_[0]->slice_values();
  ASSERT_S2FT_OK(s2ft_optimizer_step(opt_, 0.1, &g.t, 1, nullptr));
  const double m = 0.9 * 0.25, v = 0.999 * 0.5;
  const double upd = 0.1 * (m / (1 - std::pow(0.9, 3))) / (std::sqrt(v / (1 - std::pow(0.999, 3))) + 1e-8);
  const std::vector<double> after = ps_[0]->slice_values();
  for (size_t e = 0; e < after.size(); ++e) EXPECT_NEAR(after[e], before[e] - upd, 1e-6);
}

TEST_F(OptimizerLoad, NotASafetensorsFile) {
  EXPECT_EQ(load_bytes("this is not a safetensors file"), S2FT_ERR_FORMAT);
  EXPECT_NE(std::string(s2ft_last_error()).find("state.safetensors"), std::string::npos) << s2ft_last_error();
}

TEST_F(OptimizerLoad, MissingFileIsIoError) {
  EXPECT_S2FT_ERROR(s2ft_optimizer_load(opt_, temp_path("absent.safetensors").c_str()), S2FT_ERR_IO, "absent");
}

TEST_F(OptimizerLoad, WrongFormat) {
  StateFile f = adamw_state();
  f.meta["format"] = "s2ft-adapter";
  expect_rejected(f, "format");
}

TEST_F(OptimizerLoad, MissingFormat) {
  StateFile f = adamw_state();
  f.meta.erase("format");
  expect_rejected(f, "\"format\"");
}

TEST_F(OptimizerLoad, UnknownVersion) {
  StateFile f = adamw_state();
  f.meta["version"] = "3";  // "1" and "2" are known (2: sparse parameters, SM3, ages)
  expect_rejected(f, "version");
}

TEST_F(OptimizerLoad, OtherKind) {
  StateFile f = adamw_state();
  f.meta["kind"] = "sgd";
  expect_rejected(f, "\"sgd\"");
}

TEST_F(OptimizerLoad, BadStep) {
  for (const char *bad : {"-1", "abc", "", "1e3", "99999999999999999999", " 3"}) {
    StateFile f = adamw_state();
    f.meta["step"] = bad;
    expect_rejected(f, "step");
  }
}

TEST_F(OptimizerLoad, WrongParamCount) {
  StateFile f = adamw_state();
  f.meta["n_params"] = "2";
  expect_rejected(f, "2 parameters");
}

TEST_F(OptimizerLoad, BadOptionValue) {
  StateFile f = adamw_state();
  f.meta["beta2"] = "nan";
  expect_rejected(f, "beta2");
  f = adamw_state();
  f.meta["nesterov"] = "yes";
  expect_rejected(f, "nesterov");
  f = adamw_state();
  f.meta.erase("eps");
  expect_rejected(f, "eps");
}

TEST_F(OptimizerLoad, WrongAxis) {
  StateFile f = adamw_state();
  f.meta["param.0.axis"] = "rows";
  expect_rejected(f, "rows");
}

TEST_F(OptimizerLoad, MissingTensor) {
  StateFile f = adamw_state();
  f.tensors.pop_back();
  expect_rejected(f, "param.0.v");
}

TEST_F(OptimizerLoad, ExtraTensor) {
  StateFile f = adamw_state();
  f.tensors.push_back({"param.0.master", "F32", {4, 2}, 1.0f});
  expect_rejected(f, "param.0.master");
}

TEST_F(OptimizerLoad, WrongTensorDtype) {
  StateFile f = adamw_state();
  f.tensors[0].dtype = "F16";
  expect_rejected(f, "param.0.m");
}

TEST_F(OptimizerLoad, WrongTensorShape) {
  StateFile f = adamw_state();
  f.tensors[1].shape = {2, 4};
  expect_rejected(f, "param.0.v");
  f = adamw_state();
  f.tensors[0].shape = {8};
  expect_rejected(f, "param.0.m");
}

TEST_F(OptimizerLoad, NegativeSecondMoment) {
  StateFile f = adamw_state();
  f.tensors[1].value = -1.0f;
  expect_rejected(f, "param.0.v");
}

TEST_F(OptimizerLoad, FileOfAnotherOptimizerLayout) {
  // Saved from an optimizer with a bf16 weight (it carries a master) and a
  // different slice: both mismatches are reported as FORMAT.
  Random rng(41);
  std::vector<std::unique_ptr<Param>> other;
  other.push_back(std::make_unique<Param>(S2FT_BF16, 4, 6, S2FT_AXIS_COLUMNS, range(1, 2), false, rng));
  s2ft_optimizer *o = make(options(S2FT_OPTIMIZER_ADAMW), other);
  ASSERT_S2FT_OK(s2ft_optimizer_save(o, path_.c_str()));
  const std::vector<uint8_t> before = ps_[0]->w.bytes;
  EXPECT_S2FT_ERROR(s2ft_optimizer_load(opt_, path_.c_str()), S2FT_ERR_FORMAT, "param.0.master");

  std::vector<std::unique_ptr<Param>> wider;
  wider.push_back(std::make_unique<Param>(S2FT_F32, 4, 6, S2FT_AXIS_COLUMNS, range(1, 3), false, rng));
  s2ft_optimizer *w = make(options(S2FT_OPTIMIZER_ADAMW), wider);
  ASSERT_S2FT_OK(s2ft_optimizer_save(w, path_.c_str()));
  EXPECT_S2FT_ERROR(s2ft_optimizer_load(opt_, path_.c_str()), S2FT_ERR_FORMAT, "[4, 2]");

  EXPECT_EQ(ps_[0]->w.bytes, before);
}

TEST_F(OptimizerLoad, SaveThenLoadEmptyOptimizer) {
  s2ft_optimizer *e = make(options(S2FT_OPTIMIZER_SGD));
  ASSERT_S2FT_OK(s2ft_optimizer_save(e, path_.c_str()));
  s2ft_optimizer *f = make(options(S2FT_OPTIMIZER_SGD));
  ASSERT_S2FT_OK(s2ft_optimizer_load(f, path_.c_str()));
  EXPECT_S2FT_ERROR(s2ft_optimizer_load(opt_, path_.c_str()), S2FT_ERR_FORMAT, "sgd");
}

// ---------------------------------------------------------------------------
// Error paths: one test each, checking the status and the message.

class OptimizerErrors : public Optimizer {
 protected:
  void SetUp() override {
    Optimizer::SetUp();
    Random rng(50);
    w_ = HostMatrix(S2FT_F32, 4, 6);
    w_.fill_random(rng);
    g_ = HostMatrix(S2FT_F32, 4, 2);
    g_.fill_random(rng);
    opt_ = make(options(S2FT_OPTIMIZER_ADAMW));
  }
  s2ft_slice cols(int64_t begin, int64_t count, const int64_t *indices = nullptr) {
    return s2ft_slice{S2FT_AXIS_COLUMNS, begin, count, indices};
  }
  // Registers columns [1, 3) of w_.
  void add_default() {
    s2ft_slice s = cols(1, 2);
    int64_t index;
    ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt_, &w_.t, &s, &index));
  }
  s2ft_status create_with(const s2ft_optimizer_options &o) {
    s2ft_optimizer *out = reinterpret_cast<s2ft_optimizer *>(&w_);
    s2ft_clear_error();
    const s2ft_status st = s2ft_optimizer_create(ctx_, &o, &out);
    EXPECT_EQ(out, nullptr) << "a failed create must set *out to NULL";
    if (out != nullptr && st == S2FT_OK) s2ft_optimizer_destroy(out);
    return st;
  }
  s2ft_status add(const s2ft_slice &s) {
    int64_t index = 99;
    s2ft_clear_error();
    const s2ft_status st = s2ft_optimizer_add_param(opt_, &w_.t, &s, &index);
    if (st != S2FT_OK) {
      EXPECT_EQ(index, -1);
    }
    return st;
  }

  HostMatrix w_, g_;
  s2ft_optimizer *opt_ = nullptr;
};

TEST_F(OptimizerErrors, OptionsInitNull) {
  EXPECT_S2FT_ERROR(s2ft_optimizer_options_init(nullptr, S2FT_OPTIMIZER_OPTIONS_VERSION), S2FT_ERR_INVALID_ARGUMENT,
                    "opts");
}

TEST_F(OptimizerErrors, OptionsInitUnknownVersion) {
  s2ft_optimizer_options o;
  EXPECT_S2FT_ERROR(s2ft_optimizer_options_init(&o, 99), S2FT_ERR_INVALID_ARGUMENT, "version");
}

TEST_F(OptimizerErrors, CreateNullContext) {
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
  s2ft_optimizer *out = nullptr;
  EXPECT_S2FT_ERROR(s2ft_optimizer_create(nullptr, &o, &out), S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_EQ(out, nullptr);
}

TEST_F(OptimizerErrors, CreateNullOptions) {
  s2ft_optimizer *out = nullptr;
  EXPECT_S2FT_ERROR(s2ft_optimizer_create(ctx_, nullptr, &out), S2FT_ERR_INVALID_ARGUMENT, "opts");
  EXPECT_EQ(out, nullptr);
}

TEST_F(OptimizerErrors, CreateNullOut) {
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
  EXPECT_S2FT_ERROR(s2ft_optimizer_create(ctx_, &o, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
}

TEST_F(OptimizerErrors, CreateUninitialisedOptions) {
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
  o.version = 0;
  EXPECT_EQ(create_with(o), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(s2ft_last_error()).find("opts->version"), std::string::npos) << s2ft_last_error();
}

TEST_F(OptimizerErrors, CreateUnknownKind) {
  s2ft_optimizer_options o = options(7);
  EXPECT_EQ(create_with(o), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(s2ft_last_error()).find("opts->kind"), std::string::npos) << s2ft_last_error();
}

TEST_F(OptimizerErrors, CreateBeta1OutOfRange) {
  for (double b : {1.0, -0.1, std::nan(""), 2.0}) {
    s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
    o.beta1 = b;
    EXPECT_EQ(create_with(o), S2FT_ERR_INVALID_ARGUMENT) << b;
    EXPECT_NE(std::string(s2ft_last_error()).find("opts->beta1"), std::string::npos) << s2ft_last_error();
  }
}

TEST_F(OptimizerErrors, CreateBeta2OutOfRange) {
  for (double b : {1.0, -1e-9, kInf}) {
    s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
    o.beta2 = b;
    EXPECT_EQ(create_with(o), S2FT_ERR_INVALID_ARGUMENT) << b;
    EXPECT_NE(std::string(s2ft_last_error()).find("opts->beta2"), std::string::npos) << s2ft_last_error();
  }
}

TEST_F(OptimizerErrors, CreateBadEps) {
  for (double v : {-1e-8, std::nan(""), kInf}) {
    s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
    o.eps = v;
    EXPECT_EQ(create_with(o), S2FT_ERR_INVALID_ARGUMENT) << v;
    EXPECT_NE(std::string(s2ft_last_error()).find("opts->eps"), std::string::npos) << s2ft_last_error();
  }
}

TEST_F(OptimizerErrors, CreateBadWeightDecay) {
  for (double v : {-0.1, std::nan(""), -kInf}) {
    s2ft_optimizer_options o = options(S2FT_OPTIMIZER_SGD);
    o.weight_decay = v;
    EXPECT_EQ(create_with(o), S2FT_ERR_INVALID_ARGUMENT) << v;
    EXPECT_NE(std::string(s2ft_last_error()).find("opts->weight_decay"), std::string::npos) << s2ft_last_error();
  }
}

TEST_F(OptimizerErrors, CreateBadMomentum) {
  for (double v : {-0.5, std::nan("")}) {
    s2ft_optimizer_options o = options(S2FT_OPTIMIZER_SGD);
    o.momentum = v;
    EXPECT_EQ(create_with(o), S2FT_ERR_INVALID_ARGUMENT) << v;
    EXPECT_NE(std::string(s2ft_last_error()).find("opts->momentum"), std::string::npos) << s2ft_last_error();
  }
}

TEST_F(OptimizerErrors, CreateBadMaxGradNorm) {
  for (double v : {-1.0, std::nan(""), kInf}) {
    s2ft_optimizer_options o = options(S2FT_OPTIMIZER_ADAMW);
    o.max_grad_norm = v;
    EXPECT_EQ(create_with(o), S2FT_ERR_INVALID_ARGUMENT) << v;
    EXPECT_NE(std::string(s2ft_last_error()).find("opts->max_grad_norm"), std::string::npos) << s2ft_last_error();
  }
}

TEST_F(OptimizerErrors, CreateNesterovWithoutMomentum) {
  s2ft_optimizer_options o = options(S2FT_OPTIMIZER_SGD);
  o.nesterov = 1;
  EXPECT_EQ(create_with(o), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(s2ft_last_error()).find("opts->nesterov"), std::string::npos) << s2ft_last_error();
}

TEST_F(OptimizerErrors, AddParamNullOptimizer) {
  s2ft_slice s = cols(0, 1);
  int64_t index;
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_param(nullptr, &w_.t, &s, &index), S2FT_ERR_INVALID_ARGUMENT, "opt");
}

TEST_F(OptimizerErrors, AddParamNullWeight) {
  s2ft_slice s = cols(0, 1);
  int64_t index;
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_param(opt_, nullptr, &s, &index), S2FT_ERR_INVALID_ARGUMENT, "weight");
}

TEST_F(OptimizerErrors, AddParamNullSlice) {
  int64_t index;
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_param(opt_, &w_.t, nullptr, &index), S2FT_ERR_INVALID_ARGUMENT, "slice");
}

TEST_F(OptimizerErrors, AddParamNullIndex) {
  s2ft_slice s = cols(0, 1);
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_param(opt_, &w_.t, &s, nullptr), S2FT_ERR_INVALID_ARGUMENT, "index");
}

TEST_F(OptimizerErrors, AddParamBadAxis) {
  s2ft_slice s = cols(0, 1);
  s.axis = 2;
  EXPECT_EQ(add(s), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(s2ft_last_error()).find("slice->axis"), std::string::npos) << s2ft_last_error();
}

TEST_F(OptimizerErrors, AddParamCountZero) {
  EXPECT_EQ(add(cols(0, 0)), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(s2ft_last_error()).find("slice->count"), std::string::npos) << s2ft_last_error();
}

TEST_F(OptimizerErrors, AddParamCountAboveLines) {
  EXPECT_EQ(add(cols(0, 7)), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(s2ft_last_error()).find("slice->count"), std::string::npos) << s2ft_last_error();
}

TEST_F(OptimizerErrors, AddParamRangeOutside) {
  EXPECT_EQ(add(cols(5, 2)), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(s2ft_last_error()).find("slice"), std::string::npos) << s2ft_last_error();
  EXPECT_EQ(add(cols(-1, 2)), S2FT_ERR_INVALID_ARGUMENT);
  s2ft_slice rows{S2FT_AXIS_ROWS, 3, 2, nullptr};  // w_ has 4 rows
  EXPECT_EQ(add(rows), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(s2ft_last_error()).find("rows"), std::string::npos) << s2ft_last_error();
}

TEST_F(OptimizerErrors, AddParamIndexOutOfRange) {
  const int64_t idx[3] = {0, 6, 2};
  EXPECT_EQ(add(cols(0, 3, idx)), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(s2ft_last_error()).find("slice->indices[1]"), std::string::npos) << s2ft_last_error();
  const int64_t neg[2] = {1, -1};
  EXPECT_EQ(add(cols(0, 2, neg)), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(s2ft_last_error()).find("slice->indices[1]"), std::string::npos) << s2ft_last_error();
}

TEST_F(OptimizerErrors, AddParamIndexDuplicated) {
  const int64_t idx[4] = {3, 1, 5, 1};
  EXPECT_EQ(add(cols(0, 4, idx)), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(s2ft_last_error()).find("slice->indices"), std::string::npos) << s2ft_last_error();
  EXPECT_NE(std::string(s2ft_last_error()).find("1"), std::string::npos) << s2ft_last_error();
}

TEST_F(OptimizerErrors, AddParamWeightNotRank2) {
  s2ft_tensor t = w_.t;
  t.ndim = 3;
  t.shape[2] = 1;
  t.strides[2] = 1;
  s2ft_slice s = cols(0, 1);
  int64_t index;
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_param(opt_, &t, &s, &index), S2FT_ERR_SHAPE, "weight");
}

TEST_F(OptimizerErrors, AddParamWeightBadDtype) {
  s2ft_tensor t = w_.t;
  t.dtype.code = 0;  // DLPack int
  s2ft_slice s = cols(0, 1);
  int64_t index;
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_param(opt_, &t, &s, &index), S2FT_ERR_DTYPE, "weight");
}

TEST_F(OptimizerErrors, AddParamWeightOnAnotherDevice) {
  s2ft_tensor t = w_.t;
  t.device.type = S2FT_DEVICE_CUDA;
  s2ft_slice s = cols(0, 1);
  int64_t index;
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_param(opt_, &t, &s, &index), S2FT_ERR_DEVICE, "weight");
}

TEST_F(OptimizerErrors, AddParamAliasingWeight) {
  s2ft_tensor t = w_.t;
  t.strides[0] = 1;  // rows overlap each other
  s2ft_slice s = cols(0, 1);
  int64_t index;
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_param(opt_, &t, &s, &index), S2FT_ERR_INVALID_ARGUMENT, "weight");
}

TEST_F(OptimizerErrors, AddParamOverlapsAnotherParam) {
  add_default();  // columns 1, 2
  const int64_t idx[2] = {4, 2};
  EXPECT_EQ(add(cols(0, 2, idx)), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(s2ft_last_error()).find("parameter 0"), std::string::npos) << s2ft_last_error();
}

TEST_F(OptimizerErrors, AddParamAfterStepIsStateError) {
  add_default();
  ASSERT_S2FT_OK(s2ft_optimizer_step(opt_, 1e-3, &g_.t, 1, nullptr));
  EXPECT_EQ(add(cols(4, 1)), S2FT_ERR_STATE);
  EXPECT_NE(std::string(s2ft_last_error()).find("first step"), std::string::npos) << s2ft_last_error();
}

TEST_F(OptimizerErrors, StepNullOptimizer) {
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(nullptr, 1e-3, &g_.t, 1, nullptr), S2FT_ERR_INVALID_ARGUMENT, "opt");
}

TEST_F(OptimizerErrors, StepNullGrads) {
  add_default();
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, 1e-3, nullptr, 1, nullptr), S2FT_ERR_INVALID_ARGUMENT, "grads");
}

TEST_F(OptimizerErrors, StepGradCountMismatch) {
  add_default();
  s2ft_tensor g[2] = {g_.t, g_.t};
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, 1e-3, g, 2, nullptr), S2FT_ERR_INVALID_ARGUMENT, "n_grads");
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, 1e-3, g, 0, nullptr), S2FT_ERR_INVALID_ARGUMENT, "n_grads");
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, 1e-3, g, -1, nullptr), S2FT_ERR_INVALID_ARGUMENT, "n_grads");
}

TEST_F(OptimizerErrors, StepGradWrongShape) {
  add_default();
  HostMatrix g(S2FT_F32, 2, 4);  // transposed shape
  Random rng(1);
  g.fill_random(rng);
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, 1e-3, &g.t, 1, nullptr), S2FT_ERR_SHAPE, "grads[0]");
}

TEST_F(OptimizerErrors, StepGradWrongDtype) {
  add_default();  // f32 weight: only f32 gradients
  HostMatrix g(S2FT_BF16, 4, 2);
  Random rng(2);
  g.fill_random(rng);
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, 1e-3, &g.t, 1, nullptr), S2FT_ERR_DTYPE, "grads[0]");
}

TEST_F(OptimizerErrors, StepGradOtherHalfDtype) {
  // A bf16 weight accepts f32 or bf16 gradients, not f16.
  HostMatrix w(S2FT_BF16, 3, 3);
  Random rng(3);
  w.fill_random(rng);
  s2ft_slice s = cols(0, 2);
  int64_t index;
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt_, &w.t, &s, &index));
  HostMatrix g(S2FT_F16, 3, 2);
  g.fill_random(rng);
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, 1e-3, &g.t, 1, nullptr), S2FT_ERR_DTYPE, "grads[0]");
}

TEST_F(OptimizerErrors, StepGradWrongDevice) {
  add_default();
  s2ft_tensor g = g_.t;
  g.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, 1e-3, &g, 1, nullptr), S2FT_ERR_DEVICE, "grads[0]");
}

TEST_F(OptimizerErrors, StepGradOverlapsWeight) {
  add_default();
  s2ft_tensor g = w_.t;  // a [4, 2] view into the weight itself
  g.shape[1] = 2;
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, 1e-3, &g, 1, nullptr), S2FT_ERR_INVALID_ARGUMENT, "grads[0]");
}

TEST_F(OptimizerErrors, StepNegativeLr) {
  add_default();
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, -1e-3, &g_.t, 1, nullptr), S2FT_ERR_INVALID_ARGUMENT, "lr");
}

TEST_F(OptimizerErrors, StepNonFiniteLr) {
  add_default();
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, std::nan(""), &g_.t, 1, nullptr), S2FT_ERR_INVALID_ARGUMENT, "lr");
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, kInf, &g_.t, 1, nullptr), S2FT_ERR_INVALID_ARGUMENT, "lr");
}

TEST_F(OptimizerErrors, StepNonFiniteGradientNormChangesNothing) {
  // Two identical optimizers; one sees a bad step in between. Their next
  // good steps must give identical weights (moments and step count untouched).
  add_default();
  HostMatrix w2 = w_;
  s2ft_optimizer *twin = make(options(S2FT_OPTIMIZER_ADAMW));
  s2ft_slice s = cols(1, 2);
  int64_t index;
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(twin, &w2.t, &s, &index));
  ASSERT_S2FT_OK(s2ft_optimizer_step(opt_, 1e-2, &g_.t, 1, nullptr));
  ASSERT_S2FT_OK(s2ft_optimizer_step(twin, 1e-2, &g_.t, 1, nullptr));
  for (float bad : {std::nanf(""), static_cast<float>(kInf), static_cast<float>(-kInf)}) {
    HostMatrix g = g_;
    g.set(3, 1, bad);
    const std::vector<uint8_t> before = w_.bytes;
    double norm = 0;
    EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt_, 1e-2, &g.t, 1, &norm), S2FT_ERR_INVALID_ARGUMENT, "grads[0]");
    EXPECT_FALSE(std::isfinite(norm));
    EXPECT_EQ(w_.bytes, before);
  }
  int64_t n = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_step_count(opt_, &n));
  EXPECT_EQ(n, 1);
  ASSERT_S2FT_OK(s2ft_optimizer_step(opt_, 1e-2, &g_.t, 1, nullptr));
  ASSERT_S2FT_OK(s2ft_optimizer_step(twin, 1e-2, &g_.t, 1, nullptr));
  EXPECT_EQ(w_.bytes, w2.bytes);
}

TEST_F(OptimizerErrors, StepCountNullArguments) {
  int64_t n;
  EXPECT_S2FT_ERROR(s2ft_optimizer_step_count(nullptr, &n), S2FT_ERR_INVALID_ARGUMENT, "opt");
  EXPECT_S2FT_ERROR(s2ft_optimizer_step_count(opt_, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
}

TEST_F(OptimizerErrors, SaveNullArguments) {
  EXPECT_S2FT_ERROR(s2ft_optimizer_save(nullptr, temp_path("x").c_str()), S2FT_ERR_INVALID_ARGUMENT, "opt");
  EXPECT_S2FT_ERROR(s2ft_optimizer_save(opt_, nullptr), S2FT_ERR_INVALID_ARGUMENT, "path");
}

TEST_F(OptimizerErrors, SaveOntoADirectoryIsIoError) {
  add_default();
  const std::string dir = temp_path("dir");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  EXPECT_S2FT_ERROR(s2ft_optimizer_save(opt_, dir.c_str()), S2FT_ERR_IO, "dir");
  struct stat st;
  EXPECT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  rmdir(dir.c_str());
}

TEST_F(OptimizerErrors, LoadNullArguments) {
  EXPECT_S2FT_ERROR(s2ft_optimizer_load(nullptr, temp_path("x").c_str()), S2FT_ERR_INVALID_ARGUMENT, "opt");
  EXPECT_S2FT_ERROR(s2ft_optimizer_load(opt_, nullptr), S2FT_ERR_INVALID_ARGUMENT, "path");
}

}  // namespace
