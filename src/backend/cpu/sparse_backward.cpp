// The sparse backward on the CPU (s2ft_backward_sparse; the arguments are
// checked in src/train/sparse_backward.cpp):
//   grad[n] = sum_t dy[t, r_n] x[t, c_n]    for the set's entries (SDDMM)
//   dx      = dy W                           (one GEMM, matmul.hpp)
// The SDDMM never forms dW = dy^T x. Its operands are the columns dy[:, r]
// and x[:, c], strided in memory; they are packed once per call, transposed
// into f32, so that each entry is the dot product of two contiguous
// vectors:
//   DY[u][t] = dy[t, urows[u]]   for the rows of the weight with entries
//   X[s][t]  = x[t, ucols[s]]    for the columns with entries ("slots")
// in blocks of at most kTokenBlock tokens (block b holds tokens
// [t0, t0 + len) of every packed line, contiguously).
// The set's plan (made once per set) lists the entries tile by tile: a
// tile is kTileSlots consecutive column slots, whose packed X lines fit in
// the L2 cache, and inside a tile the entries go by row, then column. Per
// token block, the tiles are visited in order: the tile's X lines stay in
// cache while every row reads them, a row's DY block stays in L1 while its
// entries in the tile use it (four at a time share its loads), and the
// plan's arrays and the accumulators are streamed, never searched.
// Partial dots are f32 (a fixed 16-lane pattern, so an entry's result does
// not depend on the target, the grouping or the thread), summed over
// token blocks in double. Threads split the rows, balanced by entries:
// within a tile a thread's rows are a contiguous run of the plan, and each
// thread owns its entries' accumulators.
#include <algorithm>
#include <climits>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/matmul.hpp"
#include "backend/cpu/parallel.hpp"
#include "common/error.hpp"
#include "common/sparse_entries.hpp"

namespace s2ft {
namespace cpu {
namespace {

constexpr int64_t kTokenBlock = 512;            // tokens per packed block (2 KiB per f32 line)
constexpr int64_t kTileSlots = 128;             // column slots per tile: 256 KiB of packed X per block
constexpr int64_t kMinWorkPerThread = 1 << 18;  // entries * tokens below which one thread does it all

// The CPU's copy of a set: the distinct rows and columns that hold
// entries, and the entries in tile order (see above).
struct SparsePlan {
  std::shared_ptr<const SparseEntries> e;
  std::vector<int64_t> urows;  // rows with entries, ascending
  std::vector<int64_t> ucols;  // columns with entries, ascending (slot s is column ucols[s])
  // Position p of the tile order: entry id[p] at packed row row[p] and slot slot[p].
  std::vector<int64_t> id;
  std::vector<int32_t> row, slot;
  std::vector<int64_t> tile_begin;  // tiles + 1: tile j is positions [tile_begin[j], tile_begin[j + 1])
  std::vector<int64_t> row_count;   // entries per packed row (thread balancing)
};

// f32 value of the element at p of dtype D.
template <int32_t D>
inline float load(const char *p) {
  if (D == S2FT_F32) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return D == S2FT_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

// dst (block layout above) <- m[t, lines[s]] for s in [s0, s1), all t.
// In groups of 16 lines, token by token: the reads of one token are one
// short run of m's row (contiguous when the lines are), the writes 16
// sequential streams.
template <int32_t D>
void pack_lines(const Matrix &m, const std::vector<int64_t> &lines, int64_t s0, int64_t s1, float *dst) {
  const int64_t T = m.rows, n = static_cast<int64_t>(lines.size());
  const int64_t es = static_cast<int64_t>(m.elem());
  int64_t offset[16];
  for (int64_t t0 = 0; t0 < T; t0 += kTokenBlock) {
    const int64_t len = std::min(kTokenBlock, T - t0);
    float *block = dst + t0 * n;
    for (int64_t g = s0; g < s1; g += 16) {
      const int64_t w = std::min<int64_t>(16, s1 - g);
      for (int64_t k = 0; k < w; ++k) offset[k] = lines[static_cast<size_t>(g + k)] * m.cs * es;
      float *out = block + g * len;
      for (int64_t tt = 0; tt < len; ++tt) {
        const char *row = m.base + (t0 + tt) * m.rs * es;
        for (int64_t k = 0; k < w; ++k) out[k * len + tt] = load<D>(row + offset[k]);
      }
    }
  }
}

void pack(const Matrix &m, const std::vector<int64_t> &lines, int64_t s0, int64_t s1, float *dst) {
  switch (m.dtype) {
    case S2FT_F32: pack_lines<S2FT_F32>(m, lines, s0, s1, dst); break;
    case S2FT_BF16: pack_lines<S2FT_BF16>(m, lines, s0, s1, dst); break;
    default: pack_lines<S2FT_F16>(m, lines, s0, s1, dst); break;
  }
}

// out[j] = sum_t a[t] b[j][t] for j < K, each in f32 with kLanes
// independent partial sums (lane k takes t = k mod kLanes; every product
// rounded, then added) reduced by halving (lane k += lane k + h for
// h = kLanes / 2, ..., 1), plus the tail t >= kLanes * floor(n / kLanes)
// summed in order. The order is fixed, so an entry's result does not
// depend on K, on the target (the compiler vectorises this without
// reassociating, and the AVX-512 version below does the same operations)
// or on the thread. 64 lanes are four AVX-512 registers per entry: enough
// independent additions to hide their latency even for one entry. The K
// entries share the loads of a (one row's DY block).
constexpr int kLanes = 64;

template <int K>
inline void dots(const float *__restrict a, const float *const *b, int64_t n, float *out) {
  float acc[K][kLanes] = {};
  int64_t t = 0;
  for (; t + kLanes <= n; t += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const float av = a[t + k];
      for (int j = 0; j < K; ++j) acc[j][k] += av * b[j][t + k];
    }
  for (int j = 0; j < K; ++j) {
    float tail = 0.0f;
    for (int64_t u = t; u < n; ++u) tail += a[u] * b[j][u];
    float *q = acc[j];
    for (int h = kLanes / 2; h >= 1; h /= 2)
      for (int k = 0; k < h; ++k) q[k] += q[k + h];
    out[j] = q[0] + tail;
  }
}

// acc[p] += dot(DY[row[p]], X[slot[p]]) over one token block of `len`
// tokens, for the plan positions [p0, p1) (whole rows of one tile).
struct RunArgs {
  const SparsePlan *plan;
  const float *dy_block, *x_block;  // this block's packed DY and X
  int64_t len;
  int64_t p0, p1;
  double *acc;  // in plan order
};

// The loop over a run of positions: a row's entries four, then two, then
// one at a time, with the dot products of Dots.
template <typename Dots>
inline void run_dots_with(const RunArgs &a) {
  const int32_t *row = a.plan->row.data(), *slot = a.plan->slot.data();
  const int64_t len = a.len;
  const float *b[4];
  float d[4];
  int64_t p = a.p0;
  while (p < a.p1) {
    const int32_t r = row[p];
    const float *dyv = a.dy_block + r * len;
    int64_t stop = p + 1;
    while (stop < a.p1 && row[stop] == r) ++stop;
    for (; p + 4 <= stop; p += 4) {
      for (int j = 0; j < 4; ++j) b[j] = a.x_block + slot[p + j] * len;
      Dots::template run<4>(dyv, b, len, d);
      for (int j = 0; j < 4; ++j) a.acc[p + j] += static_cast<double>(d[j]);
    }
    if (p + 2 <= stop) {
      for (int j = 0; j < 2; ++j) b[j] = a.x_block + slot[p + j] * len;
      Dots::template run<2>(dyv, b, len, d);
      for (int j = 0; j < 2; ++j) a.acc[p + j] += static_cast<double>(d[j]);
      p += 2;
    }
    for (; p < stop; ++p) {
      b[0] = a.x_block + slot[p] * len;
      Dots::template run<1>(dyv, b, len, d);
      a.acc[p] += static_cast<double>(d[0]);
    }
  }
}

struct PortableDots {
  template <int K>
  static void run(const float *a, const float *const *b, int64_t n, float *out) {
    dots<K>(a, b, n, out);
  }
};

// The portable loop, compiled for AVX2 and for the baseline (GCC picks the
// clone for the running CPU).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx2", "default")))
#endif
void run_dots_portable(const RunArgs &a) {
  run_dots_with<PortableDots>(a);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define S2FT_SDDMM_AVX512 1
// dots<K> with AVX-512 registers: the accumulators stay in registers (16
// lanes each, as above), and the halving reduction is the same operations.
struct Avx512Dots {
  template <int K>
  __attribute__((target("avx512f"))) static void run(const float *a, const float *const *b, int64_t n, float *out) {
    static_assert(kLanes == 64, "the reduction below adds four registers");
    constexpr int V = kLanes / 16;  // registers per entry
    __m512 acc[K][V];
    for (int j = 0; j < K; ++j)
      for (int v = 0; v < V; ++v) acc[j][v] = _mm512_setzero_ps();
    int64_t t = 0;
    for (; t + kLanes <= n; t += kLanes)
      for (int v = 0; v < V; ++v) {
        const __m512 av = _mm512_loadu_ps(a + t + 16 * v);
        for (int j = 0; j < K; ++j)
          acc[j][v] = _mm512_add_ps(acc[j][v], _mm512_mul_ps(av, _mm512_loadu_ps(b[j] + t + 16 * v)));
      }
    for (int j = 0; j < K; ++j) {
      float tail = 0.0f;
      for (int64_t u = t; u < n; ++u) tail += a[u] * b[j][u];
      const __m512 h32 = _mm512_add_ps(_mm512_add_ps(acc[j][0], acc[j][2]), _mm512_add_ps(acc[j][1], acc[j][3]));
      alignas(64) float q[16];
      _mm512_store_ps(q, h32);
      const __m256 h8 = _mm256_add_ps(_mm256_load_ps(q), _mm256_load_ps(q + 8));              // k += k + 8
      const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));  // k += k + 4
      const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));                                // k += k + 2
      const __m128 h1 = _mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1));                            // 0 += 1
      out[j] = _mm_cvtss_f32(h1) + tail;
    }
  }
};

__attribute__((target("avx512f"))) void run_dots_avx512(const RunArgs &a) { run_dots_with<Avx512Dots>(a); }
#endif

void run_dots(const RunArgs &a) {
#ifdef S2FT_SDDMM_AVX512
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx512) return run_dots_avx512(a);
#endif
  run_dots_portable(a);
}

// Splits [0, n) into `parts` ranges of about equal weight (weight(i) >= 0);
// bounds has parts + 1 entries.
template <typename W>
std::vector<int64_t> balanced_ranges(int64_t n, int parts, W weight) {
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += weight(i);
  std::vector<int64_t> bounds(static_cast<size_t>(parts) + 1, n);
  bounds[0] = 0;
  double run = 0.0;
  int k = 1;
  for (int64_t i = 0; i < n && k < parts; ++i) {
    run += weight(i);
    while (k < parts && run >= total * k / parts) bounds[static_cast<size_t>(k++)] = i + 1;
  }
  return bounds;
}

void sddmm(Instance &inst, const SparsePlan &plan, const Matrix &x, const Matrix &dy, const Matrix &grad,
           bool accumulate) {
  const int64_t count = plan.e->count(), T = x.rows;
  const int64_t nr = static_cast<int64_t>(plan.urows.size()), nc = static_cast<int64_t>(plan.ucols.size());
  const int64_t tiles = static_cast<int64_t>(plan.tile_begin.size()) - 1;
  std::vector<double> acc(static_cast<size_t>(count), 0.0);  // plan order
  if (T > 0) {
    const int threads = static_cast<int>(std::max<int64_t>(
        1, std::min<int64_t>(inst.threads, count * T / kMinWorkPerThread)));
    float *dy_packed = inst.scratch(0, static_cast<size_t>(nr * T));
    float *x_packed = inst.scratch(1, static_cast<size_t>(nc * T));
    // Each thread packs a share of the rows and of the columns, then takes
    // its rows [u0, u1) of every tile.
    const std::vector<int64_t> rows =
        balanced_ranges(nr, threads, [&](int64_t u) { return static_cast<double>(plan.row_count[static_cast<size_t>(u)]); });
    run_parallel(threads, [&](int k) {
      pack(dy, plan.urows, nr * k / threads, nr * (k + 1) / threads, dy_packed);
      pack(x, plan.ucols, nc * k / threads, nc * (k + 1) / threads, x_packed);
    });
    run_parallel(threads, [&](int k) {
      const int64_t u0 = rows[static_cast<size_t>(k)], u1 = rows[static_cast<size_t>(k) + 1];
      if (u0 >= u1) return;
      // This thread's positions in each tile (rows ascend within a tile).
      std::vector<int64_t> begin(static_cast<size_t>(tiles)), end(static_cast<size_t>(tiles));
      for (int64_t j = 0; j < tiles; ++j) {
        const auto first = plan.row.begin() + plan.tile_begin[static_cast<size_t>(j)];
        const auto last = plan.row.begin() + plan.tile_begin[static_cast<size_t>(j) + 1];
        begin[static_cast<size_t>(j)] = std::lower_bound(first, last, u0) - plan.row.begin();
        end[static_cast<size_t>(j)] = std::lower_bound(first, last, u1) - plan.row.begin();
      }
      for (int64_t t0 = 0; t0 < T; t0 += kTokenBlock) {
        RunArgs a{&plan, dy_packed + t0 * nr, x_packed + t0 * nc, std::min(kTokenBlock, T - t0), 0, 0, acc.data()};
        for (int64_t j = 0; j < tiles; ++j) {
          a.p0 = begin[static_cast<size_t>(j)];
          a.p1 = end[static_cast<size_t>(j)];
          if (a.p0 < a.p1) run_dots(a);
        }
      }
    });
  }
  float *g = grad.f32();  // f32 [1, count] (checked by the core)
  const int64_t gs = grad.cs;
  for (int64_t p = 0; p < count; ++p) {
    float &out = g[plan.id[static_cast<size_t>(p)] * gs];
    out = static_cast<float>((accumulate ? static_cast<double>(out) : 0.0) + acc[static_cast<size_t>(p)]);
  }
}

}  // namespace

void sparse_set_create(backend::Instance *, const std::shared_ptr<const SparseEntries> &entries,
                       backend::Object *out) {
  const SparseEntries &e = *entries;
  const int64_t count = e.count();
  if (count > INT32_MAX)
    fail(S2FT_ERR_UNSUPPORTED, "a sparse set of " + std::to_string(count) + " entries exceeds the CPU backend's " +
                                   std::to_string(INT32_MAX));
  auto p = std::make_shared<SparsePlan>();
  p->e = entries;
  std::vector<int32_t> row_of(static_cast<size_t>(count));
  for (int64_t r = 0; r < e.rows; ++r) {
    const int64_t b = e.row_offsets[static_cast<size_t>(r)], end = e.row_offsets[static_cast<size_t>(r + 1)];
    if (end == b) continue;
    for (int64_t n = b; n < end; ++n) row_of[static_cast<size_t>(n)] = static_cast<int32_t>(p->urows.size());
    p->urows.push_back(r);
    p->row_count.push_back(end - b);
  }
  // Column slots: the used columns in ascending order.
  std::vector<int32_t> col_slot(static_cast<size_t>(e.cols), -1);
  for (int64_t n = 0; n < count; ++n) col_slot[static_cast<size_t>(e.col(n))] = 0;
  for (int64_t c = 0; c < e.cols; ++c)
    if (col_slot[static_cast<size_t>(c)] == 0) {
      col_slot[static_cast<size_t>(c)] = static_cast<int32_t>(p->ucols.size());
      p->ucols.push_back(c);
    }
  // Tile order: a stable counting sort of the (row, column)-ordered entries by tile.
  const int64_t tiles = (static_cast<int64_t>(p->ucols.size()) + kTileSlots - 1) / kTileSlots;
  p->tile_begin.assign(static_cast<size_t>(tiles + 1), 0);
  for (int64_t n = 0; n < count; ++n) ++p->tile_begin[static_cast<size_t>(col_slot[static_cast<size_t>(e.col(n))] / kTileSlots + 1)];
  for (int64_t j = 0; j < tiles; ++j) p->tile_begin[static_cast<size_t>(j + 1)] += p->tile_begin[static_cast<size_t>(j)];
  std::vector<int64_t> next(p->tile_begin.begin(), p->tile_begin.end() - 1);
  p->id.resize(static_cast<size_t>(count));
  p->row.resize(static_cast<size_t>(count));
  p->slot.resize(static_cast<size_t>(count));
  for (int64_t n = 0; n < count; ++n) {
    const int32_t s = col_slot[static_cast<size_t>(e.col(n))];
    const size_t q = static_cast<size_t>(next[static_cast<size_t>(s / kTileSlots)]++);
    p->id[q] = n;
    p->row[q] = row_of[static_cast<size_t>(n)];
    p->slot[q] = s;
  }
  *out = std::move(p);
}

void backward_sparse(backend::Instance *inst, const void *set, const Matrix &x, const Matrix &dy, const Matrix *w,
                     const Matrix *dx, const Matrix &grad, bool accumulate_dx, bool accumulate_grad) {
  Instance &c = instance(inst);
  if (dx != nullptr) matmul(c, Op::N, dy, Op::N, *w, *dx, accumulate_dx);
  sddmm(c, *static_cast<const SparsePlan *>(set), x, dy, grad, accumulate_grad);
}

// SpIEL-AG's candidate sums: the SDDMM gradient g at the set (as above),
// then sums[n] += g[n] and sums[count + n] += g[n]^2 in double.
void sparse_gradient_sums(backend::Instance *inst, const void *set, const Matrix &x, const Matrix &dy, void *sums) {
  const SparsePlan &plan = *static_cast<const SparsePlan *>(set);
  const int64_t count = plan.e->count();
  std::vector<float> g(static_cast<size_t>(count));
  sddmm(instance(inst), plan, x, dy, f32_view(g.data(), 1, count), false);
  std::vector<double> &s = *static_cast<std::vector<double> *>(sums);
  for (int64_t n = 0; n < count; ++n) {
    const double v = g[static_cast<size_t>(n)];
    s[static_cast<size_t>(n)] += v;
    s[static_cast<size_t>(count + n)] += v * v;
  }
}

}  // namespace cpu
}  // namespace s2ft
