// Stream ordering and workspace of the per-step training calls
// (s2ft_forward_partial, s2ft_backward_partial) on CUDA:
//  - work goes on the context's non-blocking stream and the calls return
//    without waiting for it (no hidden synchronisation): the stream is held
//    by a host function that only the test releases, and the calls must
//    come back while it is still held;
//  - a caller workspace that is too small fails with S2FT_ERR_OUT_OF_MEMORY
//    naming the workspace; one of s2ft_context_workspace_needed() bytes
//    works and gives the same bits as the library's own workspace.
#include <cuda_runtime.h>

#include <atomic>
#include <chrono>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "gpu/gpu_support.hpp"

using s2ft_gpu::bit_equal;
using s2ft_gpu::DeviceMatrix;
using s2ft_gpu::GpuContext;
using s2ft_gpu::settle;
using s2ft_gpu::max_rel_diff;
using s2ft_test::HostMatrix;
using s2ft_test::Random;
using s2ft_test::shuffled_lines;
using s2ft_test::tolerance;

namespace {

HostMatrix random_matrix(Random &rng, int32_t dtype, int64_t rows, int64_t cols) {
  HostMatrix m(dtype, rows, cols);
  m.fill_random(rng);
  return m;
}

HostMatrix poisoned(int32_t dtype, int64_t rows, int64_t cols) {
  HostMatrix m(dtype, rows, cols);
  m.poison();
  return m;
}

// One training step's partial calls for a bf16 layer: an indexed column
// slice (saved-input gather with uploaded indices) and an indexed row slice
// (dy[:, S] gathered into scratch), with the CPU backend's results.
struct Problem {
  static constexpr int32_t dt = S2FT_BF16;
  static constexpr int64_t T = 37, out = 45, in = 70, kc = 9, kr = 11;
  Random rng{2024};
  std::vector<int64_t> col_idx = shuffled_lines(rng, in, kc), row_idx = shuffled_lines(rng, out, kr);
  s2ft_slice cslice{S2FT_AXIS_COLUMNS, 0, kc, col_idx.data()};
  s2ft_slice rslice{S2FT_AXIS_ROWS, 0, kr, row_idx.data()};
  HostMatrix W = random_matrix(rng, dt, out, in), X = random_matrix(rng, dt, T, in), DY = random_matrix(rng, dt, T, out);
  // CPU results: column slice (dw in bf16), row slice (dw in f32).
  HostMatrix Yc = poisoned(dt, T, out), XSc = poisoned(dt, T, kc), DXc = poisoned(dt, T, in),
             DWc = poisoned(dt, out, kc);
  HostMatrix Yr = poisoned(dt, T, out), XSr = poisoned(dt, T, in), DXr = poisoned(dt, T, in),
             DWr = poisoned(S2FT_F32, kr, in);

  Problem() {
    s2ft_test::Context cpu;
    EXPECT_EQ(s2ft_forward_partial(cpu.ctx, &cslice, &X.t, &W.t, &Yc.t, &XSc.t), S2FT_OK) << s2ft_last_error();
    EXPECT_EQ(s2ft_backward_partial(cpu.ctx, &cslice, &W.t, &XSc.t, &DY.t, &DXc.t, &DWc.t, 0), S2FT_OK)
        << s2ft_last_error();
    EXPECT_EQ(s2ft_forward_partial(cpu.ctx, &rslice, &X.t, &W.t, &Yr.t, &XSr.t), S2FT_OK) << s2ft_last_error();
    EXPECT_EQ(s2ft_backward_partial(cpu.ctx, &rslice, &W.t, &XSr.t, &DY.t, &DXr.t, &DWr.t, 0), S2FT_OK)
        << s2ft_last_error();
  }
};

// The problem's tensors on the device, every one with padded rows.
struct DeviceSet {
  DeviceMatrix w, x, dy;
  DeviceMatrix yc, xsc, dxc, dwc, yr, xsr, dxr, dwr;
  explicit DeviceSet(const Problem &p)
      : w(p.W, p.in + 2),
        x(p.X, p.in + 6),
        dy(p.DY, p.out + 1),
        yc(p.dt, p.T, p.out, p.out + 3),
        xsc(p.dt, p.T, p.kc, p.kc + 1),
        dxc(p.dt, p.T, p.in, p.in + 4),
        dwc(p.dt, p.out, p.kc, p.kc + 7),
        yr(p.dt, p.T, p.out, p.out + 3),
        xsr(p.dt, p.T, p.in, p.in + 2),
        dxr(p.dt, p.T, p.in, p.in + 4),
        dwr(S2FT_F32, p.kr, p.in, p.in + 5) {}
  void poison_outputs() {
    for (DeviceMatrix *m : {&yc, &xsc, &dxc, &dwc, &yr, &xsr, &dxr, &dwr}) m->poison();
  }
};

struct Outcome {
  s2ft_status status = S2FT_OK;
  std::string message;
};

// Queues the four calls; returns the first failure (never asserts, so a
// caller holding the stream can always release it).
Outcome enqueue_step(s2ft_context *ctx, const Problem &p, DeviceSet &d) {
  Outcome o;
  auto record = [&](s2ft_status st) {
    if (st != S2FT_OK && o.status == S2FT_OK) {
      o.status = st;
      o.message = s2ft_last_error();
    }
  };
  record(s2ft_forward_partial(ctx, &p.cslice, &d.x.t, &d.w.t, &d.yc.t, &d.xsc.t));
  record(s2ft_backward_partial(ctx, &p.cslice, &d.w.t, &d.xsc.t, &d.dy.t, &d.dxc.t, &d.dwc.t, 0));
  record(s2ft_forward_partial(ctx, &p.rslice, &d.x.t, &d.w.t, &d.yr.t, &d.xsr.t));
  record(s2ft_backward_partial(ctx, &p.rslice, &d.w.t, &d.xsr.t, &d.dy.t, &d.dxr.t, &d.dwr.t, 0));
  return o;
}

// Call after the context's stream is synchronised.
void expect_step_matches_cpu(const Problem &p, const DeviceSet &d) {
  EXPECT_LE(max_rel_diff(d.yc.download(), p.Yc), tolerance(p.dt)) << "columns: y";
  EXPECT_TRUE(bit_equal(d.xsc.download(), p.XSc)) << "columns: x_saved";
  EXPECT_LE(max_rel_diff(d.dxc.download(), p.DXc), tolerance(p.dt)) << "columns: dx";
  EXPECT_LE(max_rel_diff(d.dwc.download(), p.DWc), tolerance(p.dt)) << "columns: dw_slice";
  EXPECT_LE(max_rel_diff(d.yr.download(), p.Yr), tolerance(p.dt)) << "rows: y";
  EXPECT_TRUE(bit_equal(d.xsr.download(), p.XSr)) << "rows: x_saved";
  EXPECT_LE(max_rel_diff(d.dxr.download(), p.DXr), tolerance(p.dt)) << "rows: dx";
  EXPECT_LE(max_rel_diff(d.dwr.download(), p.DWr), tolerance(S2FT_F32)) << "rows: dw_slice";
}

// A gate on the stream: a host function that holds the stream until the
// test releases it, or gives up after 10 s and records that it did.
struct Gate {
  std::atomic<bool> released{false};
  std::atomic<bool> finished{false};
  std::atomic<bool> timed_out{false};
};

void CUDART_CB hold_stream(void *arg) {
  Gate &gate = *static_cast<Gate *>(arg);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!gate.released.load()) {
    if (std::chrono::steady_clock::now() > deadline) {
      gate.timed_out.store(true);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  gate.finished.store(true);
}

TEST(GpuStream, PartialCallsReturnWhileTheStreamIsHeld) {
  S2FT_REQUIRE_GPU();
  Gate gate;  // outlives the context, whose destruction waits for the stream
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  const Problem p;
  DeviceSet d(p);
  settle();

  // Warm-up: one-time work (loading kernels, growing the library's
  // workspace, allocating the 64 pinned staging slots that index uploads
  // rotate through) happens here; the step below must then queue only.
  for (int i = 0; i < 64; ++i) {
    const Outcome o = enqueue_step(g.ctx, p, d);
    ASSERT_EQ(o.status, S2FT_OK) << o.message;
  }
  g.sync();
  expect_step_matches_cpu(p, d);
  d.poison_outputs();
  settle();

  ASSERT_CUDA_OK(cudaLaunchHostFunc(g.stream, hold_stream, &gate));
  const auto t0 = std::chrono::steady_clock::now();
  const Outcome o = enqueue_step(g.ctx, p, d);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const bool ran_past_gate = gate.finished.load();  // must still be held: the calls did not wait
  gate.released.store(true);
  ASSERT_S2FT_OK(s2ft_context_synchronize(g.ctx));

  EXPECT_EQ(o.status, S2FT_OK) << o.message;
  EXPECT_FALSE(ran_past_gate) << "the stream got past the held host function before the test released it: a call "
                                 "waited for the stream (hidden synchronisation)";
  EXPECT_FALSE(gate.timed_out.load()) << "the host function gave up after 10 s: a call waited for the stream";
  EXPECT_LT(elapsed, 5.0) << "the calls took " << elapsed << " s to return while the stream was held";
  expect_step_matches_cpu(p, d);
}

TEST(GpuWorkspace, CallerWorkspaceTooSmallThenLargeEnough) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  const Problem p;
  DeviceSet d(p);
  settle();
  auto row_backward = [&] {
    return s2ft_backward_partial(g.ctx, &p.rslice, &d.w.t, &d.x.t, &d.dy.t, &d.dxr.t, &d.dwr.t, 0);
  };

  // The library's own workspace; the row backward needs scratch (dy[:, S]
  // and the uploaded indices), and it is the only call on this context.
  ASSERT_S2FT_OK(row_backward());
  g.sync();
  const HostMatrix dx_own = d.dxr.download(), dw_own = d.dwr.download();
  EXPECT_LE(max_rel_diff(dx_own, p.DXr), tolerance(p.dt));
  EXPECT_LE(max_rel_diff(dw_own, p.DWr), tolerance(S2FT_F32));
  size_t need = 0;
  ASSERT_S2FT_OK(s2ft_context_workspace_needed(g.ctx, &need));
  ASSERT_GT(need, 0u);

  void *ws = nullptr;
  ASSERT_CUDA_OK(cudaMalloc(&ws, need));
  ASSERT_S2FT_OK(s2ft_context_set_workspace(g.ctx, ws, need - 1));
  EXPECT_S2FT_ERROR(row_backward(), S2FT_ERR_OUT_OF_MEMORY, "workspace");

  ASSERT_S2FT_OK(s2ft_context_set_workspace(g.ctx, ws, need));
  g.sync();
  d.dxr.poison();
  d.dwr.poison();
  settle();
  ASSERT_S2FT_OK(row_backward());
  g.sync();
  EXPECT_TRUE(bit_equal(d.dxr.download(), dx_own)) << "dx differs between the library's and the caller's workspace";
  EXPECT_TRUE(bit_equal(d.dwr.download(), dw_own)) << "dw_slice differs between the library's and the caller's workspace";
  size_t need_after = 0;
  ASSERT_S2FT_OK(s2ft_context_workspace_needed(g.ctx, &need_after));
  EXPECT_EQ(need_after, need);

  // The whole step fits too (the other calls need no more scratch).
  d.poison_outputs();
  settle();
  const Outcome o = enqueue_step(g.ctx, p, d);
  EXPECT_EQ(o.status, S2FT_OK) << o.message;
  g.sync();
  expect_step_matches_cpu(p, d);

  ASSERT_S2FT_OK(s2ft_context_set_workspace(g.ctx, nullptr, 0));
  ASSERT_CUDA_OK(cudaFree(ws));
}

}  // namespace
