// Saves two adapters for a 1-layer model, loads them back from their files,
// applies the first to the model's down_proj, switches to the second,
// removes it and checks that the base weights are restored bit-exactly.
#include <s2ft/s2ft.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

void check(s2ft_status st, const char *what) {
  if (st != S2FT_OK) throw std::runtime_error(std::string(what) + ": " + s2ft_last_error());
}

// Handles that destroy themselves.
struct AdapterDeleter { void operator()(s2ft_adapter *a) const { s2ft_adapter_destroy(a); } };
struct ContextDeleter { void operator()(s2ft_context *c) const { s2ft_context_destroy(c); } };
struct ModelDeleter { void operator()(s2ft_model *m) const { s2ft_model_destroy(m); } };
using Adapter = std::unique_ptr<s2ft_adapter, AdapterDeleter>;
using Context = std::unique_ptr<s2ft_context, ContextDeleter>;
using Model = std::unique_ptr<s2ft_model, ModelDeleter>;

constexpr int64_t kDModel = 4, kDFf = 8;

// An adapter on two down_proj columns (base order), saved to `path`.
void save_adapter(const s2ft_model_shape &shape, const char *name, std::vector<int64_t> lines,
                  float step, s2ft_tensor &base, const char *path) {
  std::vector<float> delta(kDModel * lines.size());
  for (size_t i = 0; i < delta.size(); ++i) delta[i] = step * static_cast<float>(i + 1);
  s2ft_tensor d;
  check(s2ft_tensor_cpu_f32_2d(&d, delta.data(), kDModel, static_cast<int64_t>(lines.size())), "tensor");
  s2ft_adapter *raw = nullptr;
  check(s2ft_adapter_create(&shape, name, 1.0, &raw), "s2ft_adapter_create");
  Adapter a(raw);
  check(s2ft_adapter_set(a.get(), 0, S2FT_TARGET_DOWN, lines.data(), static_cast<int64_t>(lines.size()), &d, &base),
        "s2ft_adapter_set");
  check(s2ft_adapter_save(a.get(), path), "s2ft_adapter_save");
}

Adapter load_adapter(const char *path) {
  s2ft_adapter *raw = nullptr;
  check(s2ft_adapter_load(path, &raw), "s2ft_adapter_load");
  return Adapter(raw);
}

}  // namespace

int main() try {
  const s2ft_model_shape shape = {1, kDModel, 2, 1, 2, kDFf};  // layers, d_model, heads, kv heads, head_dim, d_ff
  std::vector<float> w(kDModel * kDFf);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i % 7) * 0.25f - 0.75f;
  const std::vector<float> base = w;
  s2ft_tensor down;
  check(s2ft_tensor_cpu_f32_2d(&down, w.data(), kDModel, kDFf), "tensor");

  save_adapter(shape, "first", {1, 5}, 0.125f, down, "first.safetensors");
  save_adapter(shape, "second", {5, 6}, -0.5f, down, "second.safetensors");
  Adapter first = load_adapter("first.safetensors"), second = load_adapter("second.safetensors");
  std::remove("first.safetensors");
  std::remove("second.safetensors");

  s2ft_context *ctx_raw = nullptr;
  check(s2ft_context_create(nullptr, &ctx_raw), "s2ft_context_create");
  Context ctx(ctx_raw);
  s2ft_layer_weights layer{};
  layer.down = &down;  // the model edits w in place
  s2ft_model *model_raw = nullptr;
  check(s2ft_model_create(ctx.get(), &shape, &layer, nullptr, &model_raw), "s2ft_model_create");
  Model model(model_raw);

  check(s2ft_adapter_apply(model.get(), first.get(), 1.0, 0), "s2ft_adapter_apply");
  const bool applied = w[1] == base[1] + 0.125f;  // row 0 of column 1: the first delta value
  check(s2ft_adapter_switch(model.get(), second.get(), 1.0, 0), "s2ft_adapter_switch");
  const bool switched = w[1] == base[1] && w[6] == base[6] - 1.0f;  // column 1 restored, column 6 changed
  check(s2ft_adapter_remove(model.get()), "s2ft_adapter_remove");
  const bool restored = std::memcmp(w.data(), base.data(), w.size() * sizeof(float)) == 0;
  if (!applied || !switched || !restored) throw std::runtime_error("wrong weights after apply/switch/remove");
  std::printf("C++: loaded 'first' and 'second' from files, applied, switched, removed: base restored bit-exactly\n");
  return 0;
} catch (const std::exception &e) {
  std::fprintf(stderr, "C++: %s\n", e.what());
  return 1;
}
