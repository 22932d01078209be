// SORSA on CUDA: every product is one cublasGemmEx (cuda::gemm, f32
// accumulation) on the caller's views; the elementwise steps are the small
// kernels below. Nothing waits for the device except the regularizer's
// value, which is copied to the host when asked for.
//
// Forward, with x [T, in], W_res [out, in], U [out, r], s [r], V^T [r, in]:
//   h = x V               (x as f32: cuBLAS multiplies operands of one dtype)
//   y = x W_res^T + (h * s) U^T      (in f32 scratch when y is 16-bit, rounded once)
// Backward, with g = dy U:
//   du = dy^T (h * s),  ds = colsum(g * h),  dvt = (g * s)^T x,
//   dx = dy W_res + (g * s) V^T      (in f32 scratch when dx is 16-bit)
// Regularizer: E_U = U^T U - I, E_V = V^T V - I (f32 GEMMs), their norms
// and the scaled E in one kernel, then du (+)= U (c E_U), dvt (+)= (c E_V) V^T.
#include <cstdint>

#include "cuda_copy.cuh"
#include "cuda_gemm.cuh"
#include "cuda_runtime.cuh"
#include "cuda_sorsa.hpp"

namespace s2ft {
namespace cuda {
namespace {

// dst[t, k] = src[t, k] * s[0, k] (f32 views).
__global__ void scale_columns_kernel(View<const float> src, View<const float> s, View<float> dst) {
  const int64_t n = dst.rows * dst.cols;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = e / dst.cols, k = e % dst.cols;
    dst.at(t, k) = src.at(t, k) * s.at(0, k);
  }
}

void scale_columns(Context &ctx, const Matrix &src, const Matrix &s, const Matrix &dst) {
  if (dst.empty()) return;
  scale_columns_kernel<<<grid_for(ctx, dst.rows * dst.cols), kThreads, 0, ctx.stream>>>(
      view_of<const float>(src), view_of<const float>(s), view_of<float>(dst));
  S2FT_CUDA_CHECK_LAUNCH("scale_columns");
}

// ds[0, k] (+)= sum_t g[t, k] h[t, k], summed in double: one block per column.
__global__ void column_dot_kernel(View<const float> g, View<const float> h, View<float> ds, bool accumulate) {
  __shared__ double part[kThreads];
  const int64_t k = blockIdx.x;
  double acc = 0.0;
  for (int64_t t = threadIdx.x; t < g.rows; t += blockDim.x)
    acc += static_cast<double>(g.at(t, k)) * static_cast<double>(h.at(t, k));
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double v = accumulate ? part[0] + static_cast<double>(ds.at(0, k)) : part[0];
    ds.at(0, k) = static_cast<float>(v);
  }
}

// Block b of 2 finishes Gram matrix e[b] ([r, r], compact f32): E -= I, its
// Frobenius norm to norms[b], then E *= c with c = gamma * 4 (squared) or
// gamma * 2 / norm (0 for a zero norm).
struct Grams {
  float *e[2];
  int64_t r;
};

__global__ void finish_gram_kernel(Grams g, double gamma, bool squared, double *norms) {
  __shared__ double part[kThreads];
  __shared__ double coef;
  float *e = g.e[blockIdx.x];
  const int64_t n = g.r * g.r;
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float v = e[i];
    if (i / g.r == i % g.r) v -= 1.0f;
    e[i] = v;
    acc += static_cast<double>(v) * static_cast<double>(v);
  }
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double norm = sqrt(part[0]);
    norms[blockIdx.x] = norm;
    coef = squared ? 4.0 * gamma : (norm > 0.0 ? 2.0 * gamma / norm : 0.0);
  }
  __syncthreads();
  const float c = static_cast<float>(coef);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) e[i] *= c;
}

Matrix as_f32(Scratch &s, const Matrix &m) { return m.dtype == S2FT_F32 ? m : pack(s, m, S2FT_F32); }

}  // namespace

void sorsa_forward(Context &ctx, const backend::SorsaFactors &f, const Matrix &x, const Matrix &y,
                   const Matrix *h_saved) {
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  const int64_t T = x.rows, out = f.w.rows, r = f.u.cols;
  if (T == 0) return;
  const Matrix X = as_f32(s, x);
  const Matrix H = h_saved != nullptr ? *h_saved : scratch_matrix(s, S2FT_F32, T, r);
  gemm(s, Op::N, X, Op::T, f.vt, H, false);
  const Matrix HS = scratch_matrix(s, S2FT_F32, T, r);
  scale_columns(ctx, H, f.s, HS);
  const Matrix Y = y.dtype == S2FT_F32 ? y : scratch_matrix(s, S2FT_F32, T, out);
  gemm(s, Op::N, x, Op::T, f.w, Y, false);
  gemm(s, Op::N, HS, Op::T, f.u, Y, true);
  if (y.dtype != S2FT_F32) copy(ctx, Y, y);
}

void sorsa_backward(Context &ctx, const backend::SorsaFactors &f, const Matrix &x, const Matrix *h_saved,
                    const Matrix &dy, const Matrix *dx, const backend::SorsaGrads &g, bool accumulate_dx,
                    bool accumulate_grads) {
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  const int64_t T = x.rows, in = f.w.cols, r = f.u.cols;
  const Matrix X = as_f32(s, x), DY = as_f32(s, dy);
  Matrix H;
  if (h_saved != nullptr) {
    H = *h_saved;
  } else {
    H = scratch_matrix(s, S2FT_F32, T, r);
    gemm(s, Op::N, X, Op::T, f.vt, H, false);
  }
  const Matrix G = scratch_matrix(s, S2FT_F32, T, r), GS = scratch_matrix(s, S2FT_F32, T, r),
               HS = scratch_matrix(s, S2FT_F32, T, r);
  gemm(s, Op::N, DY, Op::N, f.u, G, false);
  scale_columns(ctx, G, f.s, GS);
  scale_columns(ctx, H, f.s, HS);
  column_dot_kernel<<<static_cast<unsigned>(r), kThreads, 0, ctx.stream>>>(
      view_of<const float>(G), view_of<const float>(H), view_of<float>(g.ds), accumulate_grads);
  S2FT_CUDA_CHECK_LAUNCH("column_dot");
  gemm(s, Op::T, DY, Op::N, HS, g.du, accumulate_grads);
  gemm(s, Op::T, GS, Op::N, X, g.dvt, accumulate_grads);
  if (dx == nullptr) return;
  const bool direct = dx->dtype == S2FT_F32;
  Matrix DX = *dx;
  if (!direct) DX = accumulate_dx ? pack(s, *dx, S2FT_F32) : scratch_matrix(s, S2FT_F32, T, in);
  gemm(s, Op::N, dy, Op::N, f.w, DX, accumulate_dx);
  gemm(s, Op::N, GS, Op::N, f.vt, DX, true);
  if (!direct) copy(ctx, DX, *dx);
}

void sorsa_regularizer(Context &ctx, const Matrix &u, const Matrix &vt, const backend::SorsaRegularizer &plan,
                       const Matrix *du, const Matrix *dvt, double norms[2]) {
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  const int64_t out = u.rows, r = u.cols, in = vt.cols;
  // The decoupled step writes u and vt: every product reads copies.
  Matrix U = u, VT = vt;
  if (plan.step) {
    U = scratch_matrix(s, S2FT_F32, out, r);
    VT = scratch_matrix(s, S2FT_F32, r, in);
    copy(ctx, u, U);
    copy(ctx, vt, VT);
  }
  const Matrix EU = scratch_matrix(s, S2FT_F32, r, r), EV = scratch_matrix(s, S2FT_F32, r, r);
  gemm(s, Op::T, U, Op::N, U, EU, false);
  gemm(s, Op::N, VT, Op::T, VT, EV, false);
  double *dev_norms = s.alloc_n<double>(2);
  finish_gram_kernel<<<2, kThreads, 0, ctx.stream>>>(Grams{{EU.f32(), EV.f32()}, r}, plan.gamma, plan.squared,
                                                     dev_norms);
  S2FT_CUDA_CHECK_LAUNCH("finish_gram");
  if (du != nullptr) gemm(s, Op::N, U, Op::N, EU, *du, plan.accumulate);
  if (dvt != nullptr) gemm(s, Op::N, EV, Op::N, VT, *dvt, plan.accumulate);
  if (norms != nullptr) download_sync(ctx, norms, dev_norms, 2 * sizeof(double));
}

}  // namespace cuda
}  // namespace s2ft
