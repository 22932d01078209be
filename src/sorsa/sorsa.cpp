// SORSA (Cao, 2024, arXiv 2409.00055): a weight split by its thin SVD into
// trained factors U_p [out, r], S_p [r], V_p^T [r, in] (f32) and a frozen
// residual W_res in the weight's dtype,
//
//   W = W_res + U_p diag(S_p) V_p^T,     y = x W_res^T + ((x V_p) * S_p) U_p^T,
//
// trained with the orthonormal regularizer
//
//   R = ||U_p^T U_p - I||_F^2 + ||V_p^T V_p - I||_F^2.
//
// The public implementation forms the dense [out, in] product U diag(S) V^T
// in every forward (and autograd its dense [out, in] gradient); here the
// factors enter through [T, r] intermediates only. This file checks the
// arguments and calls the context's backend (src/backend/cpu/sorsa.cpp,
// kernels/cuda_sorsa.cu), which has the math spelled out.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <string>

#include "common/error.hpp"
#include "common/tensor.hpp"
#include "context.hpp"

namespace s2ft {
namespace {

std::string num(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

std::string dims(const Matrix &m) { return "[" + std::to_string(m.rows) + ", " + std::to_string(m.cols) + "]"; }

void require_f32(const Matrix &m, const char *name) {
  if (m.dtype != S2FT_F32)
    fail(S2FT_ERR_DTYPE, std::string(name) + " must be f32 (SORSA's factors and their gradients are f32), got " +
                             dtype_name(m.dtype));
}

// A tensor the call writes must not have distinct elements sharing memory.
void require_distinct_elements(const Matrix &m, const char *name) {
  if (m.empty()) return;
  const bool rows_ok = m.rows <= 1 || m.rs != 0;
  const bool cols_ok = m.cols <= 1 || m.cs != 0;
  const bool separated = m.rows <= 1 || m.cols <= 1 || m.rs >= m.cols * m.cs || m.cs >= m.rows * m.rs;
  if (!rows_ok || !cols_ok || !separated)
    fail_arg(std::string(name) + " has strides [" + std::to_string(m.rs) + ", " + std::to_string(m.cs) +
             "] under which distinct elements share memory; it is written, so they must not");
}

void check_flags(uint32_t flags, uint32_t allowed) {
  if (flags & ~allowed) {
    char b[16];
    std::snprintf(b, sizeof b, "%x", flags & ~allowed);
    fail_arg(std::string("flags has unknown bits 0x") + b);
  }
}

// Checks u [out, r], s [r] or [1, r], vt [r, in] (f32) against a residual
// w [out, in] and returns the factors with it.
backend::SorsaFactors check_factors(const s2ft_context &c, const Matrix &w, const s2ft_tensor *u,
                                    const s2ft_tensor *s, const s2ft_tensor *vt) {
  backend::SorsaFactors f;
  f.w = w;
  f.u = check_matrix(u, "u", c.device);
  require_f32(f.u, "u");
  if (f.u.rows != w.rows || f.u.cols < 1)
    fail_shape("u must be [out, r] = [" + std::to_string(w.rows) + ", r] with r >= 1 (w_res is " + dims(w) + "), got " +
               dims(f.u));
  const int64_t r = f.u.cols;
  f.s = check_vector(s, "s", c.device, r);
  require_f32(f.s, "s");
  f.vt = check_matrix(vt, "vt", c.device);
  require_f32(f.vt, "vt");
  require_shape(f.vt, "vt", r, w.cols);
  return f;
}

// An f32 gradient shaped like a factor (vectors: [r] or [1, r]).
Matrix check_grad(const s2ft_context &c, const s2ft_tensor *t, const char *name, const Matrix &like, bool vector) {
  Matrix g = vector ? check_vector(t, name, c.device, like.cols) : check_matrix(t, name, c.device);
  require_f32(g, name);
  if (!vector) require_shape(g, name, like.rows, like.cols);
  require_distinct_elements(g, name);
  return g;
}

struct Named {
  const Matrix *m;
  const char *name;
};

// Every output against every input, and the outputs against each other.
void require_all_disjoint(std::initializer_list<Named> outputs, std::initializer_list<Named> inputs) {
  for (auto o = outputs.begin(); o != outputs.end(); ++o) {
    if (o->m == nullptr) continue;
    for (const Named &i : inputs)
      if (i.m != nullptr) require_disjoint(*o->m, o->name, *i.m, i.name);
    for (auto p = outputs.begin(); p != o; ++p)
      if (p->m != nullptr) require_disjoint(*o->m, o->name, *p->m, p->name);
  }
}

void check_rate(double v, const char *name) {
  if (!(std::isfinite(v) && v >= 0.0)) fail_arg(std::string(name) + " must be finite and >= 0, got " + num(v));
}

// u [out, r] and vt [r, in], f32, of one rank.
void check_regularizer_factors(const Matrix &U, const Matrix &VT) {
  require_f32(U, "u");
  require_f32(VT, "vt");
  if (U.cols < 1) fail_shape("u must be [out, r] with r >= 1, got " + dims(U));
  if (VT.rows != U.cols)
    fail_shape("vt must be [r, in] with r = " + std::to_string(U.cols) + " (u's column count), got " + dims(VT));
}

}  // namespace
}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_sorsa_init(s2ft_context *ctx, s2ft_tensor *w, int32_t rank, s2ft_tensor *u, s2ft_tensor *s,
                                     s2ft_tensor *vt) {
  return s2ft::guard("s2ft_sorsa_init", [&] {
    using namespace s2ft;
    s2ft_context &c = require_context(ctx);
    const Matrix W = check_matrix(w, "w", c.device);
    const int64_t min_dim = std::min(W.rows, W.cols);
    if (min_dim < 1) fail_shape("w is " + dims(W) + "; it must not be empty");
    if (rank < 1 || rank > min_dim)
      fail_arg("rank is " + std::to_string(rank) + "; it must be in [1, min(out, in) = " + std::to_string(min_dim) + "]");
    require_distinct_elements(W, "w");
    const Matrix U = check_matrix(u, "u", c.device);
    require_f32(U, "u");
    require_shape(U, "u", W.rows, rank);
    const Matrix S = check_vector(s, "s", c.device, rank);
    require_f32(S, "s");
    const Matrix VT = check_matrix(vt, "vt", c.device);
    require_f32(VT, "vt");
    require_shape(VT, "vt", rank, W.cols);
    require_distinct_elements(U, "u");
    require_distinct_elements(S, "s");
    require_distinct_elements(VT, "vt");
    require_all_disjoint({{&W, "w"}, {&U, "u"}, {&S, "s"}, {&VT, "vt"}}, {});
    run(c, &backend::Ops::sorsa_init, W, U, S, VT);
  });
}

S2FT_API s2ft_status s2ft_sorsa_forward(s2ft_context *ctx, const s2ft_tensor *x, const s2ft_tensor *w_res,
                                        const s2ft_tensor *u, const s2ft_tensor *s, const s2ft_tensor *vt,
                                        s2ft_tensor *y, s2ft_tensor *h_saved) {
  return s2ft::guard("s2ft_sorsa_forward", [&] {
    using namespace s2ft;
    s2ft_context &c = require_context(ctx);
    const Matrix W = check_matrix(w_res, "w_res", c.device);
    const Matrix X = check_matrix(x, "x", c.device);
    const int64_t T = X.rows;
    require_shape(X, "x", T, W.cols);
    require_same_dtype(X, "x", W, "w_res");
    const backend::SorsaFactors f = check_factors(c, W, u, s, vt);
    const int64_t r = f.u.cols;
    const Matrix Y = check_matrix(y, "y", c.device);
    require_shape(Y, "y", T, W.rows);
    require_same_dtype(Y, "y", W, "w_res");
    require_distinct_elements(Y, "y");
    Matrix H;
    if (h_saved != nullptr) {
      H = check_matrix(h_saved, "h_saved", c.device);
      require_f32(H, "h_saved");
      require_shape(H, "h_saved", T, r);
      require_distinct_elements(H, "h_saved");
    }
    require_all_disjoint({{&Y, "y"}, {h_saved != nullptr ? &H : nullptr, "h_saved"}},
                         {{&X, "x"}, {&W, "w_res"}, {&f.u, "u"}, {&f.s, "s"}, {&f.vt, "vt"}});
    run(c, &backend::Ops::sorsa_forward, f, X, Y, h_saved != nullptr ? &H : nullptr);
  });
}

S2FT_API s2ft_status s2ft_sorsa_backward(s2ft_context *ctx, const s2ft_tensor *x, const s2ft_tensor *w_res,
                                         const s2ft_tensor *u, const s2ft_tensor *s, const s2ft_tensor *vt,
                                         const s2ft_tensor *h_saved, const s2ft_tensor *dy, s2ft_tensor *dx,
                                         s2ft_tensor *du, s2ft_tensor *ds, s2ft_tensor *dvt, uint32_t flags) {
  return s2ft::guard("s2ft_sorsa_backward", [&] {
    using namespace s2ft;
    s2ft_context &c = require_context(ctx);
    check_flags(flags, S2FT_ACCUMULATE_DW | S2FT_ACCUMULATE_DX);
    const Matrix W = check_matrix(w_res, "w_res", c.device);
    const Matrix X = check_matrix(x, "x", c.device);
    const int64_t T = X.rows;
    require_shape(X, "x", T, W.cols);
    require_same_dtype(X, "x", W, "w_res");
    const backend::SorsaFactors f = check_factors(c, W, u, s, vt);
    const int64_t r = f.u.cols;
    const Matrix DY = check_matrix(dy, "dy", c.device);
    require_shape(DY, "dy", T, W.rows);
    require_same_dtype(DY, "dy", W, "w_res");
    Matrix H;
    if (h_saved != nullptr) {
      H = check_matrix(h_saved, "h_saved", c.device);
      require_f32(H, "h_saved");
      require_shape(H, "h_saved", T, r);
    }
    backend::SorsaGrads g;
    g.du = check_grad(c, du, "du", f.u, false);
    g.ds = check_grad(c, ds, "ds", f.s, true);
    g.dvt = check_grad(c, dvt, "dvt", f.vt, false);
    Matrix DX;
    if (dx != nullptr) {
      DX = check_matrix(dx, "dx", c.device);
      require_shape(DX, "dx", T, W.cols);
      require_same_dtype(DX, "dx", W, "w_res");
      require_distinct_elements(DX, "dx");
    }
    require_all_disjoint({{dx != nullptr ? &DX : nullptr, "dx"}, {&g.du, "du"}, {&g.ds, "ds"}, {&g.dvt, "dvt"}},
                         {{&X, "x"},
                          {&W, "w_res"},
                          {&f.u, "u"},
                          {&f.s, "s"},
                          {&f.vt, "vt"},
                          {h_saved != nullptr ? &H : nullptr, "h_saved"},
                          {&DY, "dy"}});
    run(c, &backend::Ops::sorsa_backward, f, X, h_saved != nullptr ? &H : nullptr, DY,
        dx != nullptr ? &DX : nullptr, g, (flags & S2FT_ACCUMULATE_DX) != 0, (flags & S2FT_ACCUMULATE_DW) != 0);
  });
}

S2FT_API s2ft_status s2ft_sorsa_regularizer(s2ft_context *ctx, const s2ft_tensor *u, const s2ft_tensor *vt,
                                            double gamma, double *value, s2ft_tensor *du, s2ft_tensor *dvt,
                                            uint32_t flags) {
  return s2ft::guard("s2ft_sorsa_regularizer", [&] {
    using namespace s2ft;
    s2ft_context &c = require_context(ctx);
    check_flags(flags, S2FT_ACCUMULATE_DW | S2FT_SORSA_UNSQUARED);
    check_rate(gamma, "gamma");
    const Matrix U = check_matrix(u, "u", c.device);
    const Matrix VT = check_matrix(vt, "vt", c.device);
    check_regularizer_factors(U, VT);
    Matrix DU, DVT;
    if (du != nullptr) DU = check_grad(c, du, "du", U, false);
    if (dvt != nullptr) DVT = check_grad(c, dvt, "dvt", VT, false);
    require_all_disjoint({{du != nullptr ? &DU : nullptr, "du"}, {dvt != nullptr ? &DVT : nullptr, "dvt"}},
                         {{&U, "u"}, {&VT, "vt"}});
    backend::SorsaRegularizer plan;
    plan.gamma = gamma;
    plan.squared = (flags & S2FT_SORSA_UNSQUARED) == 0;
    plan.accumulate = (flags & S2FT_ACCUMULATE_DW) != 0;
    double norms[2] = {0.0, 0.0};
    run(c, &backend::Ops::sorsa_regularizer, U, VT, plan, du != nullptr ? &DU : nullptr,
        dvt != nullptr ? &DVT : nullptr, value != nullptr ? norms : nullptr);
    if (value != nullptr)
      *value = gamma * (plan.squared ? norms[0] * norms[0] + norms[1] * norms[1] : norms[0] + norms[1]);
  });
}

S2FT_API s2ft_status s2ft_sorsa_regularizer_step(s2ft_context *ctx, s2ft_tensor *u, s2ft_tensor *vt, double rate,
                                                 double *value, uint32_t flags) {
  return s2ft::guard("s2ft_sorsa_regularizer_step", [&] {
    using namespace s2ft;
    s2ft_context &c = require_context(ctx);
    check_flags(flags, S2FT_SORSA_UNSQUARED);
    check_rate(rate, "rate");
    const Matrix U = check_matrix(u, "u", c.device);
    const Matrix VT = check_matrix(vt, "vt", c.device);
    check_regularizer_factors(U, VT);
    require_distinct_elements(U, "u");
    require_distinct_elements(VT, "vt");
    require_disjoint(VT, "vt", U, "u");
    backend::SorsaRegularizer plan;
    plan.gamma = -rate;
    plan.squared = (flags & S2FT_SORSA_UNSQUARED) == 0;
    plan.accumulate = true;
    plan.step = true;
    double norms[2] = {0.0, 0.0};
    run(c, &backend::Ops::sorsa_regularizer, U, VT, plan, &U, &VT, value != nullptr ? norms : nullptr);
    if (value != nullptr)
      *value = rate * (plan.squared ? norms[0] * norms[0] + norms[1] * norms[1] : norms[0] + norms[1]);
  });
}

}  // extern "C"
