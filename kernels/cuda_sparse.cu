// Sparse deltas on the device. y [T, rows] row-major is Y^T [rows, T]
// column-major, and x [T, cols] row-major is X^T [cols, T] column-major, so
//   y += scale * x D^T   is   Y^T = scale * D X^T + Y^T,
// one cusparseSpMM with D in CSR (int64 indices, f32 values), f32 compute.
// cuSPARSE wants one type for D and X, so 16-bit (or strided) x is widened
// into f32 scratch first; 16-bit (or strided) y gets the product in f32
// scratch and one add kernel that rounds once.
#include <string>

#include "adapter/csr.hpp"
#include "cuda_copy.cuh"
#include "cuda_runtime.cuh"
#include "cuda_sparse.hpp"

namespace s2ft {
namespace cuda {

struct DeviceCsr {
  int32_t device = 0;
  int64_t rows = 0, cols = 0, nnz = 0;
  DeviceBuffer offsets, indices, values;  // int64 [rows + 1], int64 [nnz], f32 [nnz]
};

struct SpmmPlan {
  bool empty = true;
  float alpha = 1.0f, beta = 1.0f;
  Matrix x, y;           // the caller's views
  Matrix xf;             // f32 copy of x (base NULL: cuSPARSE reads x in place)
  float *p = nullptr;    // f32 product [T, rows] (NULL: cuSPARSE adds into y)
  int64_t T = 0, rows = 0;
  cusparseConstSpMatDescr_t a = nullptr;
  cusparseConstDnMatDescr_t b = nullptr;
  cusparseDnMatDescr_t c = nullptr;
  void *buffer = nullptr;
  // 32-bit copies of the indices, made on the device before each product,
  // only if this cuSPARSE refuses 64-bit indices for SpMM.
  const int64_t *off64 = nullptr, *idx64 = nullptr;
  int32_t *off32 = nullptr, *idx32 = nullptr;
  int64_t n_off = 0, n_idx = 0;
  SpmmPlan() = default;
  SpmmPlan(const SpmmPlan &) = delete;
  SpmmPlan &operator=(const SpmmPlan &) = delete;
  ~SpmmPlan() {
    // Descriptors are host objects; the queued SpMM does not need them.
    if (a != nullptr) cusparseDestroySpMat(a);
    if (b != nullptr) cusparseDestroyDnMat(b);
    if (c != nullptr) cusparseDestroyDnMat(c);
  }
};

namespace {

// dst(i, j) = round(dst(i, j) + src[i * cols + j]): one rounding into T.
template <typename T>
__global__ void add_f32_kernel(const float *__restrict__ src, View<T> dst) {
  const int64_t n = dst.rows * dst.cols;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / dst.cols, j = e % dst.cols;
    T &out = dst.at(i, j);
    out = from_f32<T>(to_f32(out) + src[e]);
  }
}

// dst[i] = src[i] for values known to fit in int32.
__global__ void narrow_kernel(const int64_t *__restrict__ src, int32_t *__restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = static_cast<int32_t>(src[i]);
}

// A view cuSPARSE (or cuBLAS) can read as column-major [cols, rows] with
// leading dimension rs: f32, unit column stride, rows not overlapping.
bool f32_in_place(const Matrix &m) {
  return m.dtype == S2FT_F32 && (m.cols <= 1 || m.cs == 1) && (m.rows <= 1 || m.rs >= m.cols);
}
int64_t lead_dim(const Matrix &m) { return m.rows <= 1 ? (m.cols > 0 ? m.cols : 1) : m.rs; }

}  // namespace

DeviceCsrPtr upload_csr(Context &ctx, const HostCsr &h) {
  DeviceGuard guard(ctx);
  auto c = std::make_shared<DeviceCsr>();
  c->device = ctx.device;
  c->rows = h.rows;
  c->cols = h.cols;
  c->nnz = h.nnz();
  if (static_cast<int64_t>(h.offsets.size()) != h.rows + 1 || static_cast<int64_t>(h.values.size()) != c->nnz)
    fail(S2FT_ERR_INTERNAL, "upload_csr: inconsistent host CSR");
  c->offsets.resize(ctx.device, h.offsets.size() * sizeof(int64_t));
  c->indices.resize(ctx.device, h.indices.size() * sizeof(int64_t));
  c->values.resize(ctx.device, h.values.size() * sizeof(float));
  S2FT_CUDA_CHECK(cudaMemcpyAsync(c->offsets.get(), h.offsets.data(), h.offsets.size() * sizeof(int64_t),
                                  cudaMemcpyHostToDevice, ctx.stream));
  if (c->nnz > 0) {
    S2FT_CUDA_CHECK(cudaMemcpyAsync(c->indices.get(), h.indices.data(), h.indices.size() * sizeof(int64_t),
                                    cudaMemcpyHostToDevice, ctx.stream));
    S2FT_CUDA_CHECK(cudaMemcpyAsync(c->values.get(), h.values.data(), h.values.size() * sizeof(float),
                                    cudaMemcpyHostToDevice, ctx.stream));
  }
  // The host arrays may die when this returns: wait for the copies
  // (creating a sparse delta is documented as a call that may synchronise).
  S2FT_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  return c;
}

int32_t csr_device(const DeviceCsr &csr) { return csr.device; }

std::shared_ptr<SpmmPlan> plan_spmm(Scratch &s, const DeviceCsr &csr, float scale, const Matrix &x, const Matrix &y) {
  Context &ctx = s.ctx();
  if (csr.device != ctx.device)
    fail(S2FT_ERR_DEVICE, "the sparse delta is on CUDA device " + std::to_string(csr.device) + ", the context on " +
                              std::to_string(ctx.device));
  if (x.cols != csr.cols || y.cols != csr.rows || x.rows != y.rows)
    fail(S2FT_ERR_INTERNAL, "plan_spmm: shapes do not fit the delta");
  auto p = std::make_shared<SpmmPlan>();
  p->x = x;
  p->y = y;
  p->T = x.rows;
  p->rows = csr.rows;
  if (x.rows == 0 || csr.rows == 0 || csr.nnz == 0) return p;  // nothing to add
  p->empty = false;
  const int64_t T = x.rows;

  // B = X^T column-major [cols, T]: x itself when f32 and row-contiguous.
  const void *bdata = x.base;
  int64_t ldb = lead_dim(x);
  if (!f32_in_place(x)) {
    p->xf = scratch_matrix(s, S2FT_F32, T, x.cols);
    bdata = p->xf.base;
    ldb = x.cols;
  }
  // C = Y^T column-major [rows, T]: y itself when f32 and row-contiguous
  // (beta 1 adds into it); otherwise an f32 product added afterwards.
  void *cdata = y.base;
  int64_t ldc = lead_dim(y);
  p->alpha = scale;
  p->beta = 1.0f;
  if (!f32_in_place(y)) {
    p->p = s.alloc_n<float>(T * csr.rows);
    cdata = p->p;
    ldc = csr.rows;
    p->beta = 0.0f;
  }
  S2FT_CUSPARSE_CHECK(cusparseCreateConstDnMat(&p->b, csr.cols, T, ldb, bdata, CUDA_R_32F, CUSPARSE_ORDER_COL));
  S2FT_CUSPARSE_CHECK(cusparseCreateDnMat(&p->c, csr.rows, T, ldc, cdata, CUDA_R_32F, CUSPARSE_ORDER_COL));
  S2FT_CUSPARSE_CHECK(cusparseCreateConstCsr(&p->a, csr.rows, csr.cols, csr.nnz, csr.offsets.get(), csr.indices.get(),
                                             csr.values.get(), CUSPARSE_INDEX_64I, CUSPARSE_INDEX_64I,
                                             CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F));
  auto buffer_size = [&](size_t *bytes) {
    return cusparseSpMM_bufferSize(ctx.sparse, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                   &p->alpha, p->a, p->b, &p->beta, p->c, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT, bytes);
  };
  size_t bytes = 0;
  cusparseStatus_t st = buffer_size(&bytes);
  constexpr int64_t kInt32Max = 2147483647;
  if (st == CUSPARSE_STATUS_NOT_SUPPORTED && csr.rows < kInt32Max && csr.cols < kInt32Max && csr.nnz < kInt32Max) {
    // This cuSPARSE wants 32-bit indices here: narrow copies in scratch.
    cusparseDestroySpMat(p->a);
    p->a = nullptr;
    p->off64 = csr.offsets.as<int64_t>();
    p->idx64 = csr.indices.as<int64_t>();
    p->n_off = csr.rows + 1;
    p->n_idx = csr.nnz;
    p->off32 = s.alloc_n<int32_t>(p->n_off);
    p->idx32 = s.alloc_n<int32_t>(p->n_idx);
    S2FT_CUSPARSE_CHECK(cusparseCreateConstCsr(&p->a, csr.rows, csr.cols, csr.nnz, p->off32, p->idx32,
                                               csr.values.get(), CUSPARSE_INDEX_32I, CUSPARSE_INDEX_32I,
                                               CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F));
    st = buffer_size(&bytes);
  }
  if (st != CUSPARSE_STATUS_SUCCESS) fail_cusparse(st, "cusparseSpMM_bufferSize");
  p->buffer = s.alloc(bytes);
  return p;
}

void run_spmm(Context &ctx, const SpmmPlan &p) {
  if (p.empty) return;
  if (p.xf.base != nullptr) copy(ctx, p.x, p.xf);  // widen (or compact) x to f32
  if (p.off32 != nullptr) {
    narrow_kernel<<<grid_for(ctx, p.n_off), kThreads, 0, ctx.stream>>>(p.off64, p.off32, p.n_off);
    S2FT_CUDA_CHECK_LAUNCH("narrow");
    if (p.n_idx > 0) narrow_kernel<<<grid_for(ctx, p.n_idx), kThreads, 0, ctx.stream>>>(p.idx64, p.idx32, p.n_idx);
    S2FT_CUDA_CHECK_LAUNCH("narrow");
  }
  // The f32 product starts at zero (beta is 0, but NaN scratch must not leak).
  if (p.p != nullptr)
    S2FT_CUDA_CHECK(cudaMemsetAsync(p.p, 0, static_cast<size_t>(p.T * p.rows) * sizeof(float), ctx.stream));
  S2FT_CUSPARSE_CHECK(cusparseSpMM(ctx.sparse, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                   &p.alpha, p.a, p.b, &p.beta, p.c, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT, p.buffer));
  if (p.p != nullptr) {
    dispatch_dtype(p.y.dtype, [&](auto t) {
      using T = decltype(t);
      add_f32_kernel<T><<<grid_for(ctx, p.T * p.rows), kThreads, 0, ctx.stream>>>(p.p, view_of<T>(p.y));
    });
    S2FT_CUDA_CHECK_LAUNCH("add_f32");
  }
}

void sparse_forward(Context &ctx, const DeviceCsr &csr, float scale, const Matrix &x, const Matrix &y) {
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  const std::shared_ptr<SpmmPlan> plan = plan_spmm(s, csr, scale, x, y);
  run_spmm(ctx, *plan);
}

}  // namespace cuda
}  // namespace s2ft
