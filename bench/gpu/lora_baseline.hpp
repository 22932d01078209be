// The LoRA serving baseline of the mixed-adapter benchmark, written for this
// benchmark: n LoRA adapters of rank r on one linear layer W [out, in], each
// stored as A [r, in] and B^T [r, out] (bf16, stacked over adapters), and a
// batch whose token t uses adapter token_adapter[t] (-1: none).
//
//   BGMV (the usual decode design): one launch for the whole batch computes
//   v[t] = A_a x_t (shrink), a second adds y_t += scale * B_a v[t] (expand).
//   SGMV for equal segments: the same two products as cuBLAS strided-batched
//   GEMMs, one launch each for all segments (segment j uses adapter j).
//
// Plus the base product y = x W^T through cuBLAS, and naive f32 references
// that check both the baseline and libs2ft's mixed forward on the device.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace bench {

struct LoraStack {
  int64_t n = 0, r = 0, in = 0, out = 0;
  const void *a = nullptr;   // bf16 [n, r, in]
  const void *bt = nullptr;  // bf16 [n, r, out]
};

// v [T, r] f32 = A_a x_t for each token (0 where the token has no adapter).
// x is bf16 [T, in] with row stride ldx.
void bgmv_shrink(const LoraStack &l, const void *x, int64_t ldx, int64_t tokens, const int32_t *token_adapter,
                 float *v, cudaStream_t stream);
// y [T, out] bf16 (row stride ldy) += scale * B_a v[t], rounded once to bf16.
void bgmv_expand(const LoraStack &l, const float *v, int64_t tokens, const int32_t *token_adapter, float scale,
                 void *y, int64_t ldy, cudaStream_t stream);

// Segment j = rows [j * seg_len, (j + 1) * seg_len) uses adapter j, for
// j < n_segments <= l.n: V_j = X_j A_j^T (bf16 scratch v, [T, r]), then
// Y_j += scale * V_j B_j^T. Compact x [T, in] and y [T, out].
void sgmv_equal_segments(cublasHandle_t h, const LoraStack &l, const void *x, int64_t n_segments, int64_t seg_len,
                         void *v_bf16, float scale, void *y);

// y = alpha * x W^T + beta * y with x bf16 [T, in], W bf16 [out, in], all
// compact; y is bf16 (y_f32 false) or f32. f32 accumulation.
void gemm_xwt(cublasHandle_t h, const void *x, const void *w, int64_t tokens, int64_t in, int64_t out, void *y,
              bool y_f32, float alpha, float beta);

// Naive f32 references (one thread per output, no tiling: checks only).
// y_ref [T, out] f32 += scale * B_a (A_a x_t).
void reference_lora(const LoraStack &l, const void *x, int64_t tokens, const int32_t *token_adapter, float scale,
                    float *v_scratch, float *y_ref, cudaStream_t stream);
// y_ref [T, out] f32 += scale * sum_c x[t, lines_a[c]] * delta_a[o, c] for a
// column adapter a = token_adapter[t] with k lines: lines int64 [n, k],
// delta f32 [n, out, k].
void reference_column_delta(const void *x, int64_t tokens, int64_t in, int64_t out, int64_t k, int64_t n,
                            const int64_t *lines, const float *delta, const int32_t *token_adapter, float scale,
                            float *y_ref, cudaStream_t stream);

}  // namespace bench
