// Section "backward": partial vs full backward of one linear layer y = x W^T
// at LLaMA-2-7B shapes, bf16, T = --tokens (2048), --ratio (2%) of the lines.
//
// Both variants are s2ft_backward_partial on the CUDA context:
//   full     dx = dy W plus the full dW = dy^T x (the slice is every line);
//   partial  the same dx plus dW_S of the k trained lines, contiguous (a
//            co-permuted model: columns [0, k) with the saved x_S [T, k], or
//            rows [0, k));
//   index    the same from an index list (an unpermuted model).
// dW is bf16 like the weight (what PyTorch's full backward writes too).
// The floor is 2.0x (two GEMMs of equal size, S2FT shrinks one by k/n);
// exactly 2 / (1 + k/n) for these k. Target: >= 1.8x.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "sections.hpp"

namespace bench {
namespace {

struct Case {
  const char *name;     // the weight whose training this is
  const char *weights;  // the weights of that shape
  int64_t out, in;
  int32_t axis;
};

// dst [rows, width] (compact) = src's block at (r0, c0) of row stride ld.
void copy_block(const DeviceMatrix &dst, const DeviceMatrix &src, int64_t r0, int64_t c0, cudaStream_t s) {
  const size_t e = src.elem();
  const char *from = static_cast<const char *>(src.data()) + (static_cast<size_t>(r0 * src.cols + c0)) * e;
  BENCH_CUDA(cudaMemcpy2DAsync(dst.data(), static_cast<size_t>(dst.cols) * e, from, static_cast<size_t>(src.cols) * e,
                               static_cast<size_t>(dst.cols) * e, static_cast<size_t>(dst.rows),
                               cudaMemcpyDeviceToDevice, s));
}

// dst[:, j] = src[:, cols[j]] (dst compact [src.rows, cols.size()]).
void gather_columns(const DeviceMatrix &dst, const DeviceMatrix &src, const std::vector<int64_t> &cols,
                    cudaStream_t s) {
  const size_t e = src.elem();
  for (size_t j = 0; j < cols.size(); ++j)
    BENCH_CUDA(cudaMemcpy2DAsync(static_cast<char *>(dst.data()) + j * e, static_cast<size_t>(dst.cols) * e,
                                 static_cast<const char *>(src.data()) + static_cast<size_t>(cols[j]) * e,
                                 static_cast<size_t>(src.cols) * e, e, static_cast<size_t>(src.rows),
                                 cudaMemcpyDeviceToDevice, s));
}

// dst[j, :] = src[rows[j], :] (dst compact [rows.size(), src.cols]).
void gather_rows(const DeviceMatrix &dst, const DeviceMatrix &src, const std::vector<int64_t> &rows, cudaStream_t s) {
  const size_t line = static_cast<size_t>(src.cols) * src.elem();
  for (size_t j = 0; j < rows.size(); ++j)
    BENCH_CUDA(cudaMemcpyAsync(static_cast<char *>(dst.data()) + j * line,
                               static_cast<const char *>(src.data()) + static_cast<size_t>(rows[j]) * line, line,
                               cudaMemcpyDeviceToDevice, s));
}

void run_case(Env &env, const Case &c) {
  const cudaStream_t s = env.stream;
  const bool cols = c.axis == S2FT_AXIS_COLUMNS;
  const int64_t T = env.opt.tokens, lines = cols ? c.in : c.out;
  const int64_t k = std::max<int64_t>(1, std::llround(env.opt.ratio * static_cast<double>(lines)));
  DeviceMatrix w(S2FT_BF16, c.out, c.in), x(S2FT_BF16, T, c.in), dy(S2FT_BF16, T, c.out), dx(S2FT_BF16, T, c.in);
  DeviceMatrix dw_full(S2FT_BF16, c.out, c.in), dx_ref(S2FT_BF16, T, c.in);
  // Column slices train dW[:, S] from the saved x_S [T, k]; row slices train
  // dW[S, :] from the full x.
  DeviceMatrix xs(S2FT_BF16, cols ? T : 1, cols ? k : 1), xs_idx(S2FT_BF16, cols ? T : 1, cols ? k : 1);
  DeviceMatrix dw_part(S2FT_BF16, cols ? c.out : k, cols ? k : c.in), dw_idx(S2FT_BF16, cols ? c.out : k, cols ? k : c.in);
  DeviceMatrix ref_part(S2FT_BF16, dw_part.rows, dw_part.cols), ref_idx(S2FT_BF16, dw_idx.rows, dw_idx.cols);
  fill_uniform(w, 11, 0.02f, s);
  fill_uniform(x, 12, 1.0f, s);
  fill_uniform(dy, 13, 1.0f, s);
  const std::vector<int64_t> idx = pick_distinct(lines, k, 14);
  if (cols) {
    copy_block(xs, x, 0, 0, s);  // x_S of the contiguous slice: the first k columns
    gather_columns(xs_idx, x, idx, s);
  }

  const s2ft_slice full{c.axis, 0, lines, nullptr}, part{c.axis, 0, k, nullptr}, part_idx{c.axis, 0, k, idx.data()};
  const s2ft_tensor *x_part = cols ? &xs.t : &x.t, *x_idx = cols ? &xs_idx.t : &x.t;
  const Variant v_full{"full", [&] {
                         check(s2ft_backward_partial(env.ctx, &full, &w.t, &x.t, &dy.t, &dx.t, &dw_full.t, 0),
                               "s2ft_backward_partial (full)");
                       }};
  const Variant v_part{"partial", [&] {
                         check(s2ft_backward_partial(env.ctx, &part, &w.t, x_part, &dy.t, &dx.t, &dw_part.t, 0),
                               "s2ft_backward_partial (contiguous slice)");
                       }};
  const Variant v_idx{"partial_index", [&] {
                        check(s2ft_backward_partial(env.ctx, &part_idx, &w.t, x_idx, &dy.t, &dx.t, &dw_idx.t, 0),
                              "s2ft_backward_partial (index list)");
                      }};

  // First runs on poisoned outputs, checked against the full backward: dx is
  // the same product in all three, dW_S is a block (or gather) of the full dW.
  Measured first;
  Json j("backward");
  std::vector<Variant> ok;
  poison(dx, s);
  poison(dw_full, s);
  if (try_run(env, v_full, first)) {
    ok.push_back(v_full);
    j.add("full_nonfinite", count_nonfinite(dx, s) + count_nonfinite(dw_full, s));
    BENCH_CUDA(cudaMemcpyAsync(dx_ref.data(), dx.data(), dx.bytes(), cudaMemcpyDeviceToDevice, s));
    if (cols) {
      copy_block(ref_part, dw_full, 0, 0, s);
      gather_columns(ref_idx, dw_full, idx, s);
    } else {
      copy_block(ref_part, dw_full, 0, 0, s);
      gather_rows(ref_idx, dw_full, idx, s);
    }
  }
  const bool have_ref = !ok.empty();
  poison(dx, s);
  poison(dw_part, s);
  if (try_run(env, v_part, first)) {
    ok.push_back(v_part);
    j.add("partial_nonfinite", count_nonfinite(dx, s) + count_nonfinite(dw_part, s));
    if (have_ref) {
      j.add("partial_dx_rel_diff", max_rel_diff(dx, dx_ref, s));
      j.add("partial_dw_rel_diff", max_rel_diff(dw_part, ref_part, s));
    }
  }
  poison(dx, s);
  poison(dw_idx, s);
  if (try_run(env, v_idx, first)) {
    ok.push_back(v_idx);
    j.add("partial_index_nonfinite", count_nonfinite(dx, s) + count_nonfinite(dw_idx, s));
    if (have_ref) {
      j.add("partial_index_dx_rel_diff", max_rel_diff(dx, dx_ref, s));
      j.add("partial_index_dw_rel_diff", max_rel_diff(dw_idx, ref_idx, s));
    }
  }

  Measured m = measure(env, ok, nullptr, nullptr, 3, env.reps(20));
  m.errors.insert(m.errors.end(), first.errors.begin(), first.errors.end());
  const double tf = m.ms("full"), tp = m.ms("partial"), ti = m.ms("partial_index");
  const double flop_full = 4.0 * static_cast<double>(T) * static_cast<double>(c.out) * static_cast<double>(c.in);
  const double flop_dw_part = 2.0 * static_cast<double>(T) * static_cast<double>(k) *
                              static_cast<double>(cols ? c.out : c.in);
  const double flop_part = flop_full / 2.0 + flop_dw_part;
  const double ideal = 2.0 / (1.0 + static_cast<double>(k) / static_cast<double>(lines));
  std::printf("%-10s %-8s %5lldx%-5lld %-7s %5lld %9.3f %9.3f %9.3f %7.2fx %7.2fx %6.2fx %7.0f %7.0f\n", c.name,
              c.weights, static_cast<long long>(c.out), static_cast<long long>(c.in), cols ? "columns" : "rows",
              static_cast<long long>(k), tf, tp, ti, tf / tp, tf / ti, ideal, flop_full / (tf * 1e-3) * 1e-12,
              flop_part / (tp * 1e-3) * 1e-12);
  for (const auto &e : m.errors) std::printf("    %s: %s\n", e.first.c_str(), e.second.c_str());
  j.add("case", c.name)
      .add("weights", c.weights)
      .add("out", c.out)
      .add("in", c.in)
      .add("axis", cols ? "columns" : "rows")
      .add("tokens", T)
      .add("k", k)
      .add("lines", lines)
      .add("dtype", "bf16")
      .add("dw_dtype", "bf16")
      .add("ratio", tf / tp)
      .add("ratio_index", tf / ti)
      .add("floor", 2.0)
      .add("ideal", ideal)
      .add("target", 1.8)
      .add("full_tflops", flop_full / (tf * 1e-3) * 1e-12)
      .add("partial_tflops", flop_part / (tp * 1e-3) * 1e-12)
      .add("gemm_ceiling_tflops", env.gemm_flops * 1e-12);
  m.add_to(j);
  emit(j);
}

}  // namespace

void section_backward(Env &env) {
  const Case cases[] = {
      {"o_proj", "q/k/v/o", 4096, 4096, S2FT_AXIS_COLUMNS},
      {"v_proj", "q/k/v/o", 4096, 4096, S2FT_AXIS_ROWS},
      {"up_proj", "gate/up", 11008, 4096, S2FT_AXIS_ROWS},
      {"down_proj", "down", 4096, 11008, S2FT_AXIS_COLUMNS},
  };
  std::printf("\n== backward: full (dx + dW) vs partial (dx + dW_S), bf16, T = %lld, %.1f%% of lines, median ms\n",
              static_cast<long long>(env.opt.tokens), 100.0 * env.opt.ratio);
  std::printf("%-10s %-8s %-11s %-7s %5s %9s %9s %9s %8s %8s %7s %7s %7s\n", "case", "weights", "W", "slice", "k",
              "full", "partial", "index", "ratio", "r.index", "ideal", "TF/s f", "TF/s p");
  for (const Case &c : cases) {
    try {
      run_case(env, c);
    } catch (const Failure &f) {
      std::printf("%-10s error: %s\n", c.name, f.what());
      emit(Json("backward").add("case", c.name).add("error", std::string(f.what())));
      recover_or_exit();
    }
  }
  std::printf("  (ratio = full / partial; floor 2.00x, target >= 1.80x; PyTorch's full backward: torch_baselines.py)\n");
}

}  // namespace bench
