// Section "switch": s2ft_adapter_switch on a LLaMA-2-7B-shaped model held on
// the GPU (d_model 4096, 32 heads of 128, d_ff 11008, --layers layers, bf16
// o_proj and down_proj), at the paper's LLaMA-2 budget: 5% of heads in O
// (2 heads = 256 columns) and 2% of channels in DOWN (220 columns). Adapters
// A and B train disjoint lines; every timed call switches A -> B or B -> A.
//
// Floor: the bytes a switch must move over the copy bandwidth measured in the
// same run (read + written). Per element of a line, with bf16 weights and the
// adapters' f32 deltas on the device: restoring A's line reads the saved copy
// and writes W (2 + 2 bytes); merging B's line reads W, saves it, reads the
// delta and writes W (2 + 2 + 4 + 2). The fingerprint check of B's base lines
// can share the read of W, so the floor is the same for the checked switch.
// Target: within 2x of the floor (contiguous lines, i.e. a co-permuted model).
// PEFT's LoRA merge + unmerge of equal parameter count: torch_baselines.py.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "sections.hpp"

namespace bench {
namespace {

struct AdapterHandle {
  s2ft_adapter *a = nullptr;
  AdapterHandle() = default;
  AdapterHandle(const AdapterHandle &) = delete;
  AdapterHandle &operator=(const AdapterHandle &) = delete;
  ~AdapterHandle() { s2ft_adapter_destroy(a); }
};

struct ModelHandle {
  s2ft_model *m = nullptr;
  ~ModelHandle() { s2ft_model_destroy(m); }
};

std::vector<float> host_delta(int64_t rows, int64_t cols, uint64_t seed, float scale) {
  std::vector<float> v(static_cast<size_t>(rows * cols));
  HostRandom r{seed};
  for (float &x : v) x = r.uniform(scale);
  return v;
}

// The bf16 bytes of a device matrix, on the host (set-up only: synchronises).
std::vector<uint16_t> download(const DeviceMatrix &m, cudaStream_t s) {
  std::vector<uint16_t> h(static_cast<size_t>(m.rows * m.cols));
  BENCH_CUDA(cudaMemcpyAsync(h.data(), m.data(), m.bytes(), cudaMemcpyDeviceToHost, s));
  BENCH_CUDA(cudaStreamSynchronize(s));
  return h;
}

}  // namespace

void section_switch(Env &env) {
  const cudaStream_t s = env.stream;
  const int32_t L = env.opt.layers;
  const s2ft_model_shape shape{L, 4096, 32, 32, 128, 11008};
  const int64_t d = shape.d_model, q = int64_t{shape.n_heads} * shape.head_dim, ff = shape.d_ff;
  const int64_t heads = std::max<int64_t>(1, std::llround(0.05 * shape.n_heads));
  const int64_t k_o = heads * shape.head_dim, k_down = std::max<int64_t>(1, std::llround(0.02 * static_cast<double>(ff)));
  std::printf("\n== switch: s2ft_adapter_switch, LLaMA-2-7B shape, %d layers, bf16 O and DOWN, "
              "O %lld columns + DOWN %lld columns per layer, A and B disjoint\n",
              L, static_cast<long long>(k_o), static_cast<long long>(k_down));

  // The model's weights on the device, and the layer descriptors the model keeps.
  std::vector<std::unique_ptr<DeviceMatrix>> o, down;
  std::vector<s2ft_layer_weights> lw(static_cast<size_t>(L));
  for (int32_t l = 0; l < L; ++l) {
    o.push_back(std::make_unique<DeviceMatrix>(S2FT_BF16, d, q));
    down.push_back(std::make_unique<DeviceMatrix>(S2FT_BF16, d, ff));
    fill_uniform(*o.back(), 100 + 2 * static_cast<uint64_t>(l), 0.02f, s);
    fill_uniform(*down.back(), 101 + 2 * static_cast<uint64_t>(l), 0.02f, s);
    lw[static_cast<size_t>(l)] = s2ft_layer_weights{};
    lw[static_cast<size_t>(l)].o = &o.back()->t;
    lw[static_cast<size_t>(l)].down = &down.back()->t;
  }

  // Adapters: [0] A contiguous, [1] B contiguous, [2] A scattered, [3] B scattered.
  // O lines are whole heads (0-1 for A, 2-3 for B) in both layouts; DOWN lines
  // are [0, k) / [k, 2k) when contiguous, seeded disjoint sets when scattered.
  // The deltas are the same in every layer; fingerprints come from the base.
  AdapterHandle ad[4];
  const char *names[4] = {"A", "B", "A-scattered", "B-scattered"};
  for (int i = 0; i < 4; ++i) check(s2ft_adapter_create(&shape, names[i], 1.0, &ad[i].a), "s2ft_adapter_create");
  std::vector<float> delta_o[2] = {host_delta(d, k_o, 1, 1e-3f), host_delta(d, k_o, 2, 1e-3f)};
  std::vector<float> delta_d[2] = {host_delta(d, k_down, 3, 1e-3f), host_delta(d, k_down, 4, 1e-3f)};
  s2ft_tensor t_delta_o[2], t_delta_d[2];
  for (int i = 0; i < 2; ++i) {
    check(s2ft_tensor_cpu_f32_2d(&t_delta_o[i], delta_o[i].data(), d, k_o), "tensor");
    check(s2ft_tensor_cpu_f32_2d(&t_delta_d[i], delta_d[i].data(), d, k_down), "tensor");
  }
  std::vector<uint16_t> base0_o, base0_down;  // layer 0 as created, for the restore check
  for (int32_t l = 0; l < L; ++l) {
    std::vector<uint16_t> ho = download(*o[static_cast<size_t>(l)], s), hd = download(*down[static_cast<size_t>(l)], s);
    s2ft_tensor bo{}, bd{};
    const int64_t so[2] = {d, q}, sd[2] = {d, ff};
    check(s2ft_tensor_init(&bo, ho.data(), S2FT_BF16, S2FT_DEVICE_CPU, 0, 2, so), "tensor");
    check(s2ft_tensor_init(&bd, hd.data(), S2FT_BF16, S2FT_DEVICE_CPU, 0, 2, sd), "tensor");
    std::vector<int64_t> lo[2], ld_contig[2];
    for (int64_t i = 0; i < k_o; ++i) lo[0].push_back(i), lo[1].push_back(k_o + i);
    for (int64_t i = 0; i < k_down; ++i) ld_contig[0].push_back(i), ld_contig[1].push_back(k_down + i);
    const std::vector<int64_t> sa = pick_distinct(ff, k_down, 1000 + static_cast<uint64_t>(l));
    const std::vector<int64_t> sb = pick_distinct(ff, k_down, 2000 + static_cast<uint64_t>(l), sa);
    const std::vector<int64_t> *ld_all[4] = {&ld_contig[0], &ld_contig[1], &sa, &sb};
    for (int i = 0; i < 4; ++i) {
      check(s2ft_adapter_set(ad[i].a, l, S2FT_TARGET_O, lo[i % 2].data(), k_o, &t_delta_o[i % 2], &bo),
            "s2ft_adapter_set (O)");
      check(s2ft_adapter_set(ad[i].a, l, S2FT_TARGET_DOWN, ld_all[i]->data(), k_down, &t_delta_d[i % 2], &bd),
            "s2ft_adapter_set (DOWN)");
    }
    if (l == 0) {
      base0_o = std::move(ho);
      base0_down = std::move(hd);
    }
  }
  for (auto &a : ad) check(s2ft_adapter_upload(env.ctx, a.a), "s2ft_adapter_upload");
  sync(env);

  const double elems = static_cast<double>(L) * static_cast<double>(d) * static_cast<double>(k_o + k_down);
  const double bytes = elems * (2 + 2) + elems * (2 + 2 + 4 + 2);
  const double floor_ms = env.copy_bytes_per_s > 0 ? bytes / env.copy_bytes_per_s * 1e3 : NAN;
  std::printf("  bytes a switch must move: %.1f MB; floor at the measured %.0f GB/s: %.3f ms\n", bytes * 1e-6,
              env.copy_bytes_per_s * 1e-9, floor_ms);
  std::printf("  %-12s %12s %12s %12s %12s %s\n", "layout", "checked ms", "forced ms", "checked/flr", "forced/flr",
              "remove restores base");

  for (int layout = 0; layout < 2; ++layout) {
    const char *lname = layout == 0 ? "contiguous" : "scattered";
    Json j("switch");
    j.add("layout", lname)
        .add("layers", static_cast<int64_t>(L))
        .add("k_o", k_o)
        .add("k_down", k_down)
        .add("dtype", "bf16")
        .add("bytes", bytes)
        .add("floor_ms", floor_ms)
        .add("target_over_floor", 2.0)
        .add("copy_gbps_rw", env.copy_bytes_per_s * 1e-9);
    try {
      const s2ft_adapter *A = ad[2 * layout].a, *B = ad[2 * layout + 1].a;
      ModelHandle model;
      check(s2ft_model_create(env.ctx, &shape, lw.data(), nullptr, &model.m), "s2ft_model_create");
      check(s2ft_adapter_apply(model.m, A, 1.0, 0), "s2ft_adapter_apply");
      sync(env);
      int applied = 0;  // 0: A, 1: B
      auto switch_with = [&](uint32_t flags, const char *what) {
        check(s2ft_adapter_switch(model.m, applied == 0 ? B : A, 1.0, flags), what);
        applied ^= 1;
      };
      const std::vector<Variant> variants{
          {"checked", [&] { switch_with(0, "s2ft_adapter_switch (fingerprints checked)"); }},
          {"forced", [&] { switch_with(S2FT_APPLY_FORCE, "s2ft_adapter_switch (S2FT_APPLY_FORCE)"); }}};
      const Measured m = measure(env, variants, nullptr, nullptr, 2, env.reps(20));
      check(s2ft_adapter_remove(model.m), "s2ft_adapter_remove");
      sync(env);
      const bool exact = download(*o[0], s) == base0_o && download(*down[0], s) == base0_down;
      const double tc = m.ms("checked"), tf = m.ms("forced");
      std::printf("  %-12s %12.3f %12.3f %11.2fx %11.2fx %s\n", lname, tc, tf, tc / floor_ms, tf / floor_ms,
                  exact ? "bit-exactly" : "NO (layer 0 differs)");
      for (const auto &e : m.errors) std::printf("    %s: %s\n", e.first.c_str(), e.second.c_str());
      j.add("checked_over_floor", tc / floor_ms).add("forced_over_floor", tf / floor_ms).add_bool("restore_bit_exact", exact);
      m.add_to(j);
    } catch (const Failure &f) {
      std::printf("  %-12s error: %s\n", lname, f.what());
      j.add("error", std::string(f.what()));
      recover_or_exit();
    }
    emit(j);
  }
  std::printf("  (PEFT LoRA merge + unmerge of equal parameter count: torch_baselines.py)\n");
}

}  // namespace bench
