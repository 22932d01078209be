// LoRA baseline kernels (BGMV shrink/expand), its cuBLAS variants and the
// naive f32 references; see lora_baseline.hpp.
#include "lora_baseline.hpp"

#include <cuda_bf16.h>

#include <algorithm>

#include "bench_util.hpp"

namespace bench {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kShrinkThreads = 256;  // 8 warps, one (token, rank) dot product each
constexpr int kExpandThreads = 128;  // x 8 outputs per thread = 1024 outputs per block
constexpr int kRefThreads = 256;

bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

unsigned blocks_for(int64_t n, int threads, int64_t cap = 1 << 20) {
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>((n + threads - 1) / threads, 1), cap));
}

// The two bf16 halves of a 32-bit word as f32 (exact: a bf16 is the top 16
// bits of the f32 with the same value).
__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

// Sum of the 8 products of two 16-byte packs of bf16, in f32.
__device__ __forceinline__ float dot8(uint4 a, uint4 b) {
  float s = 0.0f;
  s = fmaf(bf16_lo(a.x), bf16_lo(b.x), s);
  s = fmaf(bf16_hi(a.x), bf16_hi(b.x), s);
  s = fmaf(bf16_lo(a.y), bf16_lo(b.y), s);
  s = fmaf(bf16_hi(a.y), bf16_hi(b.y), s);
  s = fmaf(bf16_lo(a.z), bf16_lo(b.z), s);
  s = fmaf(bf16_hi(a.z), bf16_hi(b.z), s);
  s = fmaf(bf16_lo(a.w), bf16_lo(b.w), s);
  s = fmaf(bf16_hi(a.w), bf16_hi(b.w), s);
  return s;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Shrink: v[t, j] = sum_i A[a, j, i] * x[t, i] with a = token_adapter[t]
// (v = 0 when a < 0). One warp per (t, j): lanes stride over i, 8 bf16 per
// 16-byte load when `vec` (in and ldx multiples of 8, aligned bases), then a
// shuffle reduction. The warp index is uniform across the warp, so the
// grid-stride loop and the shuffles stay converged.
__global__ void bgmv_shrink_kernel(const bf16 *__restrict__ a, const bf16 *__restrict__ x, int64_t ldx,
                                   const int32_t *__restrict__ token_adapter, int64_t tokens, int64_t r, int64_t in,
                                   int64_t n_adapters, bool vec, float *__restrict__ v) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int64_t warps_total = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t w = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32; w < tokens * r;
       w += warps_total) {
    const int64_t t = w / r, j = w % r;
    const int32_t ad = token_adapter[t];
    float acc = 0.0f;
    if (ad >= 0 && ad < n_adapters) {
      const bf16 *arow = a + (static_cast<int64_t>(ad) * r + j) * in;
      const bf16 *xrow = x + t * ldx;
      if (vec) {
        const uint4 *av = reinterpret_cast<const uint4 *>(arow);
        const uint4 *xv = reinterpret_cast<const uint4 *>(xrow);
        const int64_t nvec = in / 8;
#pragma unroll 4
        for (int64_t q = lane; q < nvec; q += 32) acc += dot8(__ldg(av + q), __ldg(xv + q));
      } else {
        for (int64_t i = lane; i < in; i += 32) acc = fmaf(__bfloat162float(arow[i]), __bfloat162float(xrow[i]), acc);
      }
    }
    acc = warp_sum(acc);
    if (lane == 0) v[t * r + j] = acc;
  }
}

// Expand: y[t, o] = bf16(y[t, o] + scale * sum_j Bt[a, j, o] * v[t, j]) for
// tokens with a = token_adapter[t] >= 0 (others untouched). Blocks stride over
// tokens (grid y) and output tiles (grid x); v[t, :] is staged in shared
// memory. With `vec` (out and ldy multiples of 8, aligned bases) a thread owns
// 8 consecutive outputs: 16-byte loads of the Bt row, coalesced across the
// warp, and one 16-byte read-modify-write of y. `a` is uniform over the block,
// so the `continue` and the barriers are reached by all of its threads.
__global__ void bgmv_expand_kernel(const bf16 *__restrict__ bt, const float *__restrict__ v,
                                   const int32_t *__restrict__ token_adapter, int64_t tokens, int64_t r, int64_t out,
                                   int64_t n_adapters, float scale, bool vec, bf16 *__restrict__ y, int64_t ldy) {
  extern __shared__ float vs[];  // r floats
  const int64_t per_thread = vec ? 8 : 1;
  const int64_t tile = static_cast<int64_t>(blockDim.x) * per_thread;
  const int64_t n_tiles = (out + tile - 1) / tile;
  for (int64_t t = blockIdx.y; t < tokens; t += gridDim.y) {
    const int32_t ad = token_adapter[t];
    if (ad < 0 || ad >= n_adapters) continue;
    __syncthreads();  // the previous token's readers are done with vs
    for (int64_t j = threadIdx.x; j < r; j += blockDim.x) vs[j] = v[t * r + j];
    __syncthreads();
    const bf16 *b = bt + static_cast<int64_t>(ad) * r * out;
    bf16 *yrow = y + t * ldy;
    for (int64_t tl = blockIdx.x; tl < n_tiles; tl += gridDim.x) {
      const int64_t o0 = tl * tile + static_cast<int64_t>(threadIdx.x) * per_thread;
      if (vec) {
        if (o0 + 8 > out) continue;  // out % 8 == 0: only whole packs exist
        float acc[8];
#pragma unroll
        for (int q = 0; q < 8; ++q) acc[q] = 0.0f;
        for (int64_t j = 0; j < r; ++j) {
          const uint4 pk = __ldg(reinterpret_cast<const uint4 *>(b + j * out + o0));
          const float vj = vs[j];
          acc[0] = fmaf(bf16_lo(pk.x), vj, acc[0]);
          acc[1] = fmaf(bf16_hi(pk.x), vj, acc[1]);
          acc[2] = fmaf(bf16_lo(pk.y), vj, acc[2]);
          acc[3] = fmaf(bf16_hi(pk.y), vj, acc[3]);
          acc[4] = fmaf(bf16_lo(pk.z), vj, acc[4]);
          acc[5] = fmaf(bf16_hi(pk.z), vj, acc[5]);
          acc[6] = fmaf(bf16_lo(pk.w), vj, acc[6]);
          acc[7] = fmaf(bf16_hi(pk.w), vj, acc[7]);
        }
        // y += scale * acc, each element rounded once to bf16 (round to nearest even).
        uint4 yv = *reinterpret_cast<const uint4 *>(yrow + o0);
        uint32_t *yw = reinterpret_cast<uint32_t *>(&yv);
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const __nv_bfloat162 h = __floats2bfloat162_rn(fmaf(scale, acc[2 * q], bf16_lo(yw[q])),
                                                         fmaf(scale, acc[2 * q + 1], bf16_hi(yw[q])));
          yw[q] = *reinterpret_cast<const uint32_t *>(&h);
        }
        *reinterpret_cast<uint4 *>(yrow + o0) = yv;
      } else {
        if (o0 >= out) continue;
        float acc = 0.0f;
        for (int64_t j = 0; j < r; ++j) acc = fmaf(__bfloat162float(b[j * out + o0]), vs[j], acc);
        yrow[o0] = __float2bfloat16_rn(fmaf(scale, acc, __bfloat162float(yrow[o0])));
      }
    }
  }
}

// Reference shrink: v[t, j] = sum_i A[a, j, i] x[t, i], one thread per (t, j).
__global__ void ref_shrink_kernel(const bf16 *a, const bf16 *x, const int32_t *token_adapter, int64_t tokens,
                                  int64_t r, int64_t in, int64_t n_adapters, float *v) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < tokens * r;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = e / r, j = e % r;
    const int32_t ad = token_adapter[t];
    float acc = 0.0f;
    if (ad >= 0 && ad < n_adapters) {
      const bf16 *arow = a + (static_cast<int64_t>(ad) * r + j) * in;
      for (int64_t i = 0; i < in; ++i) acc = fmaf(__bfloat162float(arow[i]), __bfloat162float(x[t * in + i]), acc);
    }
    v[e] = acc;
  }
}

// Reference expand: y[t, o] += scale * sum_j Bt[a, j, o] v[t, j] (f32 y).
__global__ void ref_expand_kernel(const bf16 *bt, const float *v, const int32_t *token_adapter, int64_t tokens,
                                  int64_t r, int64_t out, int64_t n_adapters, float scale, float *y) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < tokens * out;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = e / out, o = e % out;
    const int32_t ad = token_adapter[t];
    if (ad < 0 || ad >= n_adapters) continue;
    const bf16 *b = bt + static_cast<int64_t>(ad) * r * out;
    float acc = 0.0f;
    for (int64_t j = 0; j < r; ++j) acc = fmaf(__bfloat162float(b[j * out + o]), v[t * r + j], acc);
    y[e] += scale * acc;
  }
}

// Reference column delta: y[t, o] += scale * sum_c x[t, lines[a, c]] delta[a, o, c].
__global__ void ref_column_delta_kernel(const bf16 *x, int64_t tokens, int64_t in, int64_t out, int64_t k,
                                        int64_t n_adapters, const int64_t *lines, const float *delta,
                                        const int32_t *token_adapter, float scale, float *y) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < tokens * out;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = e / out, o = e % out;
    const int32_t ad = token_adapter[t];
    if (ad < 0 || ad >= n_adapters) continue;
    const int64_t *ln = lines + static_cast<int64_t>(ad) * k;
    const float *d = delta + (static_cast<int64_t>(ad) * out + o) * k;
    float acc = 0.0f;
    for (int64_t c = 0; c < k; ++c) {
      const int64_t col = ln[c];
      if (col >= 0 && col < in) acc = fmaf(__bfloat162float(x[t * in + col]), d[c], acc);
    }
    y[e] += scale * acc;
  }
}

}  // namespace

void bgmv_shrink(const LoraStack &l, const void *x, int64_t ldx, int64_t tokens, const int32_t *token_adapter,
                 float *v, cudaStream_t stream) {
  if (tokens <= 0 || l.r <= 0) return;
  const bool vec = l.in % 8 == 0 && ldx % 8 == 0 && aligned16(l.a) && aligned16(x);
  const int64_t warps = tokens * l.r;
  const unsigned blocks = blocks_for(warps * 32, kShrinkThreads);
  bgmv_shrink_kernel<<<blocks, kShrinkThreads, 0, stream>>>(static_cast<const bf16 *>(l.a),
                                                            static_cast<const bf16 *>(x), ldx, token_adapter, tokens,
                                                            l.r, l.in, l.n, vec, v);
  check_launch("bgmv_shrink_kernel");
}

void bgmv_expand(const LoraStack &l, const float *v, int64_t tokens, const int32_t *token_adapter, float scale,
                 void *y, int64_t ldy, cudaStream_t stream) {
  if (tokens <= 0 || l.r <= 0 || l.out <= 0) return;
  const bool vec = l.out % 8 == 0 && ldy % 8 == 0 && aligned16(l.bt) && aligned16(y);
  const int64_t tile = static_cast<int64_t>(kExpandThreads) * (vec ? 8 : 1);
  const int64_t n_tiles = (l.out + tile - 1) / tile;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(n_tiles, 1024)),
                  static_cast<unsigned>(std::min<int64_t>(tokens, 65535)));
  const size_t shmem = static_cast<size_t>(l.r) * sizeof(float);
  if (shmem > 48 * 1024) throw Failure("bgmv_expand: rank too large for the shared-memory stage");
  bgmv_expand_kernel<<<grid, kExpandThreads, shmem, stream>>>(static_cast<const bf16 *>(l.bt), v, token_adapter,
                                                              tokens, l.r, l.out, l.n, scale, vec,
                                                              static_cast<bf16 *>(y), ldy);
  check_launch("bgmv_expand_kernel");
}

void sgmv_equal_segments(cublasHandle_t h, const LoraStack &l, const void *x, int64_t n_segments, int64_t seg_len,
                         void *v_bf16, float scale, void *y) {
  if (n_segments <= 0 || seg_len <= 0) return;
  if (n_segments > l.n) throw Failure("sgmv_equal_segments: more segments than adapters");
  const float one = 1.0f, zero = 0.0f;
  // Column-major view: V_j^T [r, Ts] = (A_j [r, in]) (X_j^T [in, Ts]).
  BENCH_CUBLAS(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(l.r),
                                          static_cast<int>(seg_len), static_cast<int>(l.in), &one, l.a, CUDA_R_16BF,
                                          static_cast<int>(l.in), l.r * l.in, x, CUDA_R_16BF, static_cast<int>(l.in),
                                          seg_len * l.in, &zero, v_bf16, CUDA_R_16BF, static_cast<int>(l.r),
                                          seg_len * l.r, static_cast<int>(n_segments), CUBLAS_COMPUTE_32F,
                                          CUBLAS_GEMM_DEFAULT));
  // Y_j^T [out, Ts] += scale * (B_j [out, r]) (V_j^T [r, Ts]); Bt_j row-major [r, out] is B_j column-major.
  BENCH_CUBLAS(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(l.out),
                                          static_cast<int>(seg_len), static_cast<int>(l.r), &scale, l.bt, CUDA_R_16BF,
                                          static_cast<int>(l.out), l.r * l.out, v_bf16, CUDA_R_16BF,
                                          static_cast<int>(l.r), seg_len * l.r, &one, y, CUDA_R_16BF,
                                          static_cast<int>(l.out), seg_len * l.out, static_cast<int>(n_segments),
                                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void gemm_xwt(cublasHandle_t h, const void *x, const void *w, int64_t tokens, int64_t in, int64_t out, void *y,
              bool y_f32, float alpha, float beta) {
  // Column-major view: Y^T [out, T] = (W^T)^T [out, in] X^T [in, T].
  BENCH_CUBLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out), static_cast<int>(tokens),
                            static_cast<int>(in), &alpha, w, CUDA_R_16BF, static_cast<int>(in), x, CUDA_R_16BF,
                            static_cast<int>(in), &beta, y, y_f32 ? CUDA_R_32F : CUDA_R_16BF, static_cast<int>(out),
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void reference_lora(const LoraStack &l, const void *x, int64_t tokens, const int32_t *token_adapter, float scale,
                    float *v_scratch, float *y_ref, cudaStream_t stream) {
  if (tokens <= 0) return;
  ref_shrink_kernel<<<blocks_for(tokens * l.r, kRefThreads), kRefThreads, 0, stream>>>(
      static_cast<const bf16 *>(l.a), static_cast<const bf16 *>(x), token_adapter, tokens, l.r, l.in, l.n, v_scratch);
  check_launch("ref_shrink_kernel");
  ref_expand_kernel<<<blocks_for(tokens * l.out, kRefThreads), kRefThreads, 0, stream>>>(
      static_cast<const bf16 *>(l.bt), v_scratch, token_adapter, tokens, l.r, l.out, l.n, scale, y_ref);
  check_launch("ref_expand_kernel");
}

void reference_column_delta(const void *x, int64_t tokens, int64_t in, int64_t out, int64_t k, int64_t n,
                            const int64_t *lines, const float *delta, const int32_t *token_adapter, float scale,
                            float *y_ref, cudaStream_t stream) {
  if (tokens <= 0) return;
  ref_column_delta_kernel<<<blocks_for(tokens * out, kRefThreads), kRefThreads, 0, stream>>>(
      static_cast<const bf16 *>(x), tokens, in, out, k, n, lines, delta, token_adapter, scale, y_ref);
  check_launch("ref_column_delta_kernel");
}

}  // namespace bench
