// Device copies of adapters. All entries of one adapter go into two packed
// buffers (lines, deltas), each entry starting on a 256-byte boundary so
// kernels may use vector loads on delta rows.
#include <mutex>
#include <vector>

#include "adapter/adapter.hpp"
#include "cuda_adapter_mirror.hpp"
#include "cuda_runtime.cuh"

namespace s2ft {
namespace backend {

struct AdapterCopy {
  int32_t device = 0;
  uint64_t revision = 0;
  cuda::DeviceBuffer lines, delta;
  std::vector<cuda::DeviceEntry> entries;  // [layer * S2FT_NUM_TARGETS + target]
  cuda::DeviceBuffer sparse_delta;
  std::vector<cuda::DeviceSparse> sparse;  // [layer * S2FT_NUM_WEIGHTS + weight]
};

}  // namespace backend

namespace cuda {

namespace {

constexpr size_t kAlignElems = 64;  // 256 bytes of f32, 512 of int64
size_t align_elems(size_t n) { return (n + kAlignElems - 1) / kAlignElems * kAlignElems; }

std::shared_ptr<AdapterMirror> build(Context &ctx, const s2ft_adapter &a) {
  auto m = std::make_shared<AdapterMirror>();
  m->device = ctx.device;
  m->revision = a.revision;
  const size_t n_layers = a.layers.size();
  m->entries.assign(n_layers * S2FT_NUM_TARGETS, DeviceEntry{});
  // Offsets (in elements) of every entry in the packed host images.
  std::vector<size_t> line_off(m->entries.size()), delta_off(m->entries.size());
  size_t n_lines = 0, n_delta = 0;
  for (size_t l = 0; l < n_layers; ++l)
    for (size_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      const AdapterEntry &e = a.layers[l][t];
      const size_t i = l * S2FT_NUM_TARGETS + t;
      line_off[i] = n_lines;
      delta_off[i] = n_delta;
      n_lines += align_elems(e.lines.size());
      n_delta += align_elems(e.delta.size());
    }
  std::vector<int64_t> host_lines(n_lines, 0);
  std::vector<float> host_delta(n_delta, 0.0f);
  for (size_t l = 0; l < n_layers; ++l)
    for (size_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      const AdapterEntry &e = a.layers[l][t];
      const size_t i = l * S2FT_NUM_TARGETS + t;
      std::copy(e.lines.begin(), e.lines.end(), host_lines.begin() + static_cast<std::ptrdiff_t>(line_off[i]));
      std::copy(e.delta.begin(), e.delta.end(), host_delta.begin() + static_cast<std::ptrdiff_t>(delta_off[i]));
    }
  // The sparse deltas, packed the same way.
  m->sparse.assign(n_layers * S2FT_NUM_WEIGHTS, DeviceSparse{});
  std::vector<size_t> sparse_off(m->sparse.size());
  size_t n_sparse = 0;
  for (size_t l = 0; l < n_layers && l < a.sparse.size(); ++l)
    for (size_t w = 0; w < S2FT_NUM_WEIGHTS; ++w) {
      sparse_off[l * S2FT_NUM_WEIGHTS + w] = n_sparse;
      n_sparse += align_elems(a.sparse[l][w].delta.size());
    }
  std::vector<float> host_sparse(n_sparse, 0.0f);
  for (size_t l = 0; l < n_layers && l < a.sparse.size(); ++l)
    for (size_t w = 0; w < S2FT_NUM_WEIGHTS; ++w) {
      const SparseEntry &e = a.sparse[l][w];
      std::copy(e.delta.begin(), e.delta.end(),
                host_sparse.begin() + static_cast<std::ptrdiff_t>(sparse_off[l * S2FT_NUM_WEIGHTS + w]));
    }
  m->lines.resize(ctx.device, n_lines * sizeof(int64_t));
  m->delta.resize(ctx.device, n_delta * sizeof(float));
  m->sparse_delta.resize(ctx.device, n_sparse * sizeof(float));
  if (n_sparse > 0)
    S2FT_CUDA_CHECK(cudaMemcpyAsync(m->sparse_delta.get(), host_sparse.data(), n_sparse * sizeof(float),
                                    cudaMemcpyHostToDevice, ctx.stream));
  if (n_lines > 0)
    S2FT_CUDA_CHECK(cudaMemcpyAsync(m->lines.get(), host_lines.data(), n_lines * sizeof(int64_t),
                                    cudaMemcpyHostToDevice, ctx.stream));
  if (n_delta > 0)
    S2FT_CUDA_CHECK(cudaMemcpyAsync(m->delta.get(), host_delta.data(), n_delta * sizeof(float),
                                    cudaMemcpyHostToDevice, ctx.stream));
  // The host images die with this function: wait for the copies (uploading
  // is documented as a call that may synchronise).
  S2FT_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  for (size_t l = 0; l < n_layers; ++l)
    for (size_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      const AdapterEntry &e = a.layers[l][t];
      const size_t i = l * S2FT_NUM_TARGETS + t;
      if (e.empty()) continue;
      m->entries[i] = DeviceEntry{m->lines.as<int64_t>() + line_off[i], m->delta.as<float>() + delta_off[i],
                                  static_cast<int64_t>(e.lines.size())};
    }
  for (size_t l = 0; l < n_layers && l < a.sparse.size(); ++l)
    for (size_t w = 0; w < S2FT_NUM_WEIGHTS; ++w) {
      const SparseEntry &e = a.sparse[l][w];
      const size_t i = l * S2FT_NUM_WEIGHTS + w;
      if (!e.empty())
        m->sparse[i] = DeviceSparse{m->sparse_delta.as<float>() + sparse_off[i], static_cast<int64_t>(e.delta.size())};
    }
  return m;
}

}  // namespace

const AdapterMirror &mirror(Context &ctx, const s2ft_adapter &a) {
  DeviceGuard guard(ctx);
  std::lock_guard<std::mutex> lock(a.mirror_mutex);
  for (const auto &m : a.mirrors)
    if (m->device == ctx.device && m->revision == a.revision) return *m;
  // A stale copy for this device (older revision) is replaced.
  for (size_t i = 0; i < a.mirrors.size(); ++i)
    if (a.mirrors[i]->device == ctx.device) {
      a.mirrors.erase(a.mirrors.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  a.mirrors.push_back(build(ctx, a));
  return *a.mirrors.back();
}

std::shared_ptr<AdapterMirror> mirror_token(const s2ft_adapter &a, const AdapterMirror &m) {
  std::lock_guard<std::mutex> lock(a.mirror_mutex);
  for (const auto &p : a.mirrors)
    if (p.get() == &m) return p;
  return nullptr;
}

DeviceSparse sparse_entry(const AdapterMirror &m, int32_t layer, int32_t weight) {
  const size_t i = static_cast<size_t>(layer) * S2FT_NUM_WEIGHTS + static_cast<size_t>(weight);
  if (layer < 0 || weight < 0 || weight >= S2FT_NUM_WEIGHTS || i >= m.sparse.size())
    fail(S2FT_ERR_INTERNAL, "adapter mirror sparse entry out of range");
  return m.sparse[i];
}

DeviceEntry entry(const AdapterMirror &m, int32_t layer, int32_t target) {
  const size_t i = static_cast<size_t>(layer) * S2FT_NUM_TARGETS + static_cast<size_t>(target);
  if (layer < 0 || target < 0 || target >= S2FT_NUM_TARGETS || i >= m.entries.size())
    fail(S2FT_ERR_INTERNAL, "adapter mirror entry out of range");
  return m.entries[i];
}

}  // namespace cuda
}  // namespace s2ft
