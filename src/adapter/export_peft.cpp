// s2ft_adapter_export_peft: an adapter written as a Hugging Face PEFT LoRA
// adapter (adapter_config.json + adapter_model.safetensors), module by
// module exact. A column entry (O, DOWN) with lines S and delta D [out, k]
// is Delta W[:, S] = D, which is B A with B = D and A [k, in] the one-hot
// rows A[j, S[j]] = 1; a row entry (V, UP) with D [k, in] is Delta W[S, :] =
// D = B A with A = D and B [out, k] the one-hot columns B[S[j], j] = 1. Each
// module gets rank k and lora_alpha k (rank_pattern, alpha_pattern), so its
// LoRA scale alpha / r is exactly 1 and B A is the delta bit for bit.
//
// Pattern keys are "layers.<i>.<block>.<proj>" without the "model." prefix:
// PEFT matches a key against a module's full name (e.g.
// "model.layers.11.self_attn.o_proj") as the regular expression
// ".*\.<key>$" (0.13) or "(.*\.)?(<key>)$" (later versions, and vLLM), so a
// key must follow a '.' of the name. "layers.1.self_attn.o_proj" then
// matches layer 1 only: its '.' wildcards stand where every such name has a
// '.', and the layer digits and the '.' before "layers" are literal.
// target_modules lists the full module names, which PEFT compares exactly.
//
// A low-rank entry (any of the seven weights) with delta = b a is already a
// LoRA module: B = scale * b [out, k], A = a [k, in], rank k (a SORSA
// entry's k is 2r). Its module follows the layer's structured ones.
//
// Adapters with unstructured sparse entries are refused (S2FT_ERR_UNSUPPORTED):
// an arbitrary sparse delta is B A only for a rank up to min(out, in), so it
// has no exact LoRA form of small rank.
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "adapter/adapter.hpp"
#include "common/error.hpp"
#include "common/options.hpp"
#include "io/atomic_file.hpp"
#include "io/safetensors.hpp"
#include "model_shape.hpp"

namespace s2ft {
namespace {

const char *const kConfigFile = "adapter_config.json";
const char *const kWeightsFile = "adapter_model.safetensors";
// PEFT's save_pretrained prefixes module names with the PeftModel's path to
// the wrapped model.
const char *const kTensorPrefix = "base_model.model.";

std::string num(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

// Makes `dir` unless it exists as a folder (its parent must exist).
void make_folder(const std::string &dir) {
  if (::mkdir(dir.c_str(), 0777) == 0) return;
  const int err = errno;
  struct stat st;
  if (err == EEXIST && ::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return;
    fail(S2FT_ERR_IO, "out_dir '" + dir + "' exists and is not a folder");
  }
  if (err == ENOENT)
    fail(S2FT_ERR_IO, "cannot make out_dir '" + dir + "': its parent folder does not exist");
  fail(S2FT_ERR_IO, "cannot make out_dir '" + dir + "': " + std::strerror(err));
}

// The name of a module without "model.", the key of its rank and alpha.
std::string pattern_key(const std::string &module) { return module.substr(std::strlen("model.")); }

// f32(scale * v) for every value of a delta factor: one rounding, none at
// scale 1; refuses a product that overflows.
std::vector<float> scaled_factor(const std::vector<float> &v, double scale, const std::string &module) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < out.size(); ++i) {
    const float f = static_cast<float>(scale * static_cast<double>(v[i]));
    if (!std::isfinite(f))
      fail_arg("opts->scale " + num(scale) + " times the delta of " + module + " overflows f32 (delta element " +
               std::to_string(i) + " = " + num(v[i]) + ")");
    out[i] = f;
  }
  return out;
}

}  // namespace
}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_peft_export_options_init(s2ft_peft_export_options *opts, uint32_t version) {
  return s2ft::guard("s2ft_peft_export_options_init", [&] {
    s2ft::require_not_null(opts, "opts");
    s2ft::check_init_version(version, S2FT_PEFT_EXPORT_OPTIONS_VERSION);
    *opts = s2ft_peft_export_options{};
    opts->version = version;
    opts->base_model_name_or_path = nullptr;
    opts->scale = std::nan("");
  });
}

S2FT_API s2ft_status s2ft_adapter_export_peft(const s2ft_adapter *adapter, const char *out_dir,
                                              const s2ft_peft_export_options *opts) {
  return s2ft::guard("s2ft_adapter_export_peft", [&] {
    s2ft::require_live(adapter, "adapter");
    s2ft::require_not_null(out_dir, "out_dir");
    if (*out_dir == '\0') s2ft::fail_arg("out_dir is empty");
    s2ft_peft_export_options o;
    if (opts != nullptr) {
      s2ft::check_options_version(opts->version, S2FT_PEFT_EXPORT_OPTIONS_VERSION, "s2ft_peft_export_options_init");
      o = *opts;
    } else {
      s2ft_peft_export_options_init(&o, S2FT_PEFT_EXPORT_OPTIONS_VERSION);
    }
    const s2ft_adapter &a = *adapter;
    if (a.has_sparse()) {
      uint32_t mask = 0;
      int64_t entries = 0;
      s2ft_adapter_sparse_info(&a, &mask, &entries);
      std::string weights;
      for (int32_t wt = 0; wt < S2FT_NUM_WEIGHTS; ++wt)
        if (mask & S2FT_WEIGHT_BIT(wt)) weights += (weights.empty() ? "" : ",") + std::string(s2ft::weight_name(wt));
      s2ft::fail(S2FT_ERR_UNSUPPORTED,
                 "adapter \"" + a.name + "\" has " + std::to_string(entries) + " unstructured sparse entries (weights " +
                     weights + "), which a PEFT LoRA adapter cannot hold exactly: an unstructured delta has no "
                     "low-rank form of small rank. Only adapters of structured entries are exported");
    }
    const double scale = std::isnan(o.scale) ? a.default_scale : o.scale;
    if (!std::isfinite(scale)) s2ft::fail_arg("opts->scale " + s2ft::num(scale) + " is not finite");

    nlohmann::json base_name = nullptr;
    if (o.base_model_name_or_path != nullptr && *o.base_model_name_or_path != '\0') {
      base_name = std::string(o.base_model_name_or_path);
      try {
        (void)base_name.dump();  // refuses text that is not UTF-8
      } catch (const nlohmann::json::exception &) {
        s2ft::fail_arg("opts->base_model_name_or_path is not valid UTF-8");
      }
    }

    // Tensors and per-module ranks, layer by layer, targets in S2FT_TARGET_* order.
    s2ft::io::SafetensorsWriter w;
    w.set_metadata("format", "pt");
    nlohmann::json modules = nlohmann::json::array();
    nlohmann::json ranks = nlohmann::json::object();
    int64_t max_rank = 0;
    for (int32_t l = 0; l < a.shape.n_layers; ++l) {
      for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
        const s2ft::AdapterEntry &e = a.layers[static_cast<size_t>(l)][static_cast<size_t>(t)];
        if (e.empty()) continue;
        const int64_t k = static_cast<int64_t>(e.lines.size());
        int64_t out = 0, in = 0;
        s2ft::target_weight_shape(a.shape, t, &out, &in);
        const std::string module = s2ft::target_tensor_stem(l, t);

        const std::vector<float> factor = s2ft::scaled_factor(e.delta, scale, module);
        // The one-hot factor: [k, in] rows for a column target, [out, k]
        // columns for a row target; e.lines are the lines, in delta order.
        const bool columns = s2ft::target_axis(t) == S2FT_AXIS_COLUMNS;
        std::vector<float> one_hot(static_cast<size_t>(k * (columns ? in : out)), 0.0f);
        for (int64_t j = 0; j < k; ++j) {
          const int64_t line = e.lines[static_cast<size_t>(j)];
          one_hot[static_cast<size_t>(columns ? j * in + line : line * k + j)] = 1.0f;
        }
        const std::vector<int64_t> a_shape{k, in}, b_shape{out, k};
        const std::vector<float> &fa = columns ? one_hot : factor;
        const std::vector<float> &fb = columns ? factor : one_hot;
        const std::string stem = s2ft::kTensorPrefix + module;
        w.add(stem + ".lora_A.weight", "F32", a_shape, fa.data(), fa.size() * sizeof(float));
        w.add(stem + ".lora_B.weight", "F32", b_shape, fb.data(), fb.size() * sizeof(float));

        modules.push_back(module);
        ranks[s2ft::pattern_key(module)] = k;
        if (k > max_rank) max_rank = k;
      }
      for (int32_t wt = 0; wt < S2FT_NUM_WEIGHTS; ++wt) {
        const s2ft::LowRankEntry &e = a.low_rank[static_cast<size_t>(l)][static_cast<size_t>(wt)];
        if (e.empty()) continue;
        int64_t out = 0, in = 0;
        s2ft::weight_shape(a.shape, wt, &out, &in);
        const std::string module = s2ft::weight_tensor_stem(l, wt);
        const std::vector<float> fb = s2ft::scaled_factor(e.b, scale, module);
        const std::string stem = s2ft::kTensorPrefix + module;
        w.add(stem + ".lora_A.weight", "F32", {e.rank, in}, e.a.data(), e.a.size() * sizeof(float));
        w.add(stem + ".lora_B.weight", "F32", {out, e.rank}, fb.data(), fb.size() * sizeof(float));
        modules.push_back(module);
        ranks[s2ft::pattern_key(module)] = e.rank;
        if (e.rank > max_rank) max_rank = e.rank;
      }
    }
    if (modules.empty())
      s2ft::fail_arg("adapter \"" + a.name + "\" has no entries: there is nothing to export");

    // The fields PEFT's LoraConfig writes, with a plain LoRA's values.
    nlohmann::json config = {
        {"alpha_pattern", ranks},
        {"auto_mapping", nullptr},
        {"base_model_name_or_path", base_name},
        {"bias", "none"},
        {"fan_in_fan_out", false},
        {"inference_mode", true},
        {"init_lora_weights", true},
        {"layer_replication", nullptr},
        {"layers_pattern", nullptr},
        {"layers_to_transform", nullptr},
        {"loftq_config", nlohmann::json::object()},
        {"lora_alpha", max_rank},
        {"lora_dropout", 0.0},
        {"megatron_config", nullptr},
        {"megatron_core", "megatron.core"},
        {"modules_to_save", nullptr},
        {"peft_type", "LORA"},
        {"r", max_rank},
        {"rank_pattern", ranks},
        {"revision", nullptr},
        {"target_modules", modules},
        {"task_type", "CAUSAL_LM"},
        {"use_dora", false},
        {"use_rslora", false},
    };
    const std::string text = config.dump(2) + "\n";

    const std::string dir = out_dir;
    s2ft::make_folder(dir);
    const std::string sep = dir.back() == '/' ? "" : "/";
    w.write(dir + sep + s2ft::kWeightsFile);
    s2ft::io::write_file_atomic(dir + sep + s2ft::kConfigFile, text.data(), text.size());
  });
}

}  // extern "C"
