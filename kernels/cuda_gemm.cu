#include <climits>
#include <string>

#include "cuda_copy.cuh"
#include "cuda_gemm.cuh"

namespace s2ft {
namespace cuda {
namespace {

// How cuBLAS sees a row-major view: `data` with leading dimension `ld`, and
// whether it must be read transposed relative to the row-major matrix.
struct BlasOperand {
  const void *data = nullptr;
  int64_t ld = 1;
  bool flipped = false;  // the view is column-major (rs == 1): use the other op
};

// A view is readable in place when one of its strides is 1 and the other
// spans at least a line; otherwise it is packed row-major into scratch.
BlasOperand operand(Scratch &s, const Matrix &m) {
  BlasOperand o;
  if ((m.cols <= 1 || m.cs == 1) && (m.rows <= 1 || m.rs >= m.cols)) {
    o.data = m.base;
    o.ld = m.rows <= 1 ? (m.cols > 0 ? m.cols : 1) : m.rs;
    return o;
  }
  if (m.rows > 1 && m.rs == 1 && m.cs >= m.rows) {
    o.data = m.base;
    o.ld = m.cs;
    o.flipped = true;
    return o;
  }
  const Matrix p = pack(s, m, m.dtype);
  o.data = p.base;
  o.ld = p.cols > 0 ? p.cols : 1;
  return o;
}

int blas_int(int64_t v, const char *what) {
  if (v < 0 || v > INT_MAX) fail(S2FT_ERR_UNSUPPORTED, std::string("GEMM ") + what + " exceeds cuBLAS's int range");
  return static_cast<int>(v);
}

cublasOperation_t blas_op(Op op, bool flipped) {
  const bool t = (op == Op::T) != flipped;
  return t ? CUBLAS_OP_T : CUBLAS_OP_N;
}

}  // namespace

cudaDataType_t cuda_dtype(int32_t dtype) {
  switch (dtype) {
    case S2FT_F32: return CUDA_R_32F;
    case S2FT_F16: return CUDA_R_16F;
    case S2FT_BF16: return CUDA_R_16BF;
    default: fail(S2FT_ERR_DTYPE, "unsupported dtype id " + std::to_string(dtype) + " for cuBLAS");
  }
}

// Row-major C[m,n] = op(A) op(B) is column-major C^T[n,m] = op(B)^T op(A)^T,
// so cuBLAS gets (B, A) in that order with each operand's own op.
void gemm(Scratch &s, Op ta, const Matrix &a, Op tb, const Matrix &b, const Matrix &c, bool accumulate, float alpha) {
  Context &ctx = s.ctx();
  const int64_t m = c.rows, n = c.cols, k = ta == Op::N ? a.cols : a.rows;
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum: C = 0, or C unchanged when accumulating
    if (!accumulate) fill(ctx, c, 0.0f);
    return;
  }
  if (a.dtype != b.dtype) fail(S2FT_ERR_INTERNAL, "gemm operands of different dtypes");
  const BlasOperand A = operand(s, a), B = operand(s, b);
  // C must be row-major with unit column stride; otherwise work on a packed copy.
  const bool c_ready = (c.cols <= 1 || c.cs == 1) && (c.rows <= 1 || c.rs >= c.cols);
  Matrix out = c;
  if (!c_ready) {
    out = accumulate ? pack(s, c, c.dtype) : scratch_matrix(s, c.dtype, m, n);
  }
  const int64_t ldc = out.rows <= 1 ? n : out.rs;
  const float beta = accumulate ? 1.0f : 0.0f;
  S2FT_CUBLAS_CHECK(cublasGemmEx(ctx.blas, blas_op(tb, B.flipped), blas_op(ta, A.flipped), blas_int(n, "columns"),
                                 blas_int(m, "rows"), blas_int(k, "depth"), &alpha, B.data, cuda_dtype(b.dtype),
                                 blas_int(B.ld, "ldb"), A.data, cuda_dtype(a.dtype), blas_int(A.ld, "lda"), &beta,
                                 out.base, cuda_dtype(out.dtype), blas_int(ldc, "ldc"), CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
  if (!c_ready) copy(ctx, out, c);
}

}  // namespace cuda
}  // namespace s2ft
