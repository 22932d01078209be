// The model shape of a LLaMA-family checkpoint: config.json's fields, then
// every projection weight checked against them, so a configuration that
// disagrees with the tensors is an error rather than a wrong shape.
#include <limits>

#include "checkpoint/checkpoint.hpp"
#include "common/error.hpp"
#include "io/strict_json.hpp"
#include "model_shape.hpp"

namespace s2ft {
namespace checkpoint {
namespace {

[[noreturn]] void bad(const std::string &m) { fail(S2FT_ERR_FORMAT, m); }

// A positive int32 field of config.json; `fallback` < 0 means required.
int32_t config_int(const nlohmann::ordered_json &cfg, const std::string &path, const char *key, int64_t fallback) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) {
    if (fallback < 0) bad(path + " has no \"" + key + "\"");
    return static_cast<int32_t>(fallback);
  }
  if (!it->is_number_integer()) bad(path + ": \"" + key + "\" must be an integer");
  const int64_t v = it->get<int64_t>();
  if (v < 1 || v > std::numeric_limits<int32_t>::max())
    bad(path + ": \"" + key + "\" is " + std::to_string(v) + ", expected a positive 32-bit integer");
  return static_cast<int32_t>(v);
}

// model_type values whose checkpoints have LLaMA's tensor names and shapes.
bool llama_family(const std::string &model_type) {
  return model_type == "llama" || model_type == "mistral" || model_type == "qwen2";
}

std::string shape_json(const std::vector<int64_t> &shape) { return nlohmann::json(shape).dump(); }

// Every projection weight is present with a float dtype and the shape the
// configuration implies.
void check_weights(const s2ft_checkpoint &c, const s2ft_model_shape &s) {
  const int64_t d = s.d_model, nq = int64_t(s.n_heads) * s.head_dim, nkv = int64_t(s.n_kv_heads) * s.head_dim;
  const int64_t expected[kNumProjections][2] = {{nq, d}, {nkv, d}, {nkv, d}, {d, nq}, {s.d_ff, d}, {s.d_ff, d}, {d, s.d_ff}};
  for (int32_t l = 0; l < s.n_layers; ++l)
    for (int p = 0; p < kNumProjections; ++p) {
      const std::string name = projection_name(l, p);
      const int64_t e = c.find(name);
      if (e < 0)
        bad(c.dir + " has no tensor " + name + " (config.json says num_hidden_layers is " + std::to_string(s.n_layers) +
            ")");
      const io::TensorInfo &info = c.info(static_cast<size_t>(e));
      if (info.dtype != "F32" && info.dtype != "F16" && info.dtype != "BF16")
        bad(name + " has dtype " + info.dtype + "; expected F32, F16 or BF16");
      const std::vector<int64_t> want = {expected[p][0], expected[p][1]};
      if (info.shape != want)
        bad(name + " has shape " + shape_json(info.shape) + ", but config.json implies " + shape_json(want));
    }
}

}  // namespace

s2ft_model_shape model_shape(const s2ft_checkpoint &c) {
  if (!c.has_config)
    fail(S2FT_ERR_STATE, "the checkpoint was opened as one file and has no config.json to give its shape (open its "
                         "folder, or pass the shape)");
  const std::string path = c.dir + "/" + kConfigFile;
  const nlohmann::ordered_json cfg =
      io::parse_strict_json(c.config_text.data(), c.config_text.data() + c.config_text.size(), 64,
                            [&](const std::string &why) { bad(path + ": " + why); });
  auto type = cfg.find("model_type");
  if (type != cfg.end() && !type->is_null()) {
    if (!type->is_string()) bad(path + ": \"model_type\" must be a string");
    if (!llama_family(type->get<std::string>()))
      fail(S2FT_ERR_UNSUPPORTED, path + ": model_type \"" + type->get<std::string>() +
                                     "\" is not in the LLaMA family this library reads (llama, mistral, qwen2)");
  }
  s2ft_model_shape s{};
  s.d_model = config_int(cfg, path, "hidden_size", -1);
  s.n_layers = config_int(cfg, path, "num_hidden_layers", -1);
  s.n_heads = config_int(cfg, path, "num_attention_heads", -1);
  s.n_kv_heads = config_int(cfg, path, "num_key_value_heads", s.n_heads);
  s.d_ff = config_int(cfg, path, "intermediate_size", -1);
  auto head_dim = cfg.find("head_dim");
  if (s.d_model % s.n_heads != 0 && (head_dim == cfg.end() || head_dim->is_null()))
    bad(path + ": hidden_size is not a multiple of num_attention_heads and there is no head_dim");
  s.head_dim = config_int(cfg, path, "head_dim", s.d_model / s.n_heads);
  if (s.n_heads % s.n_kv_heads != 0)
    bad(path + ": num_attention_heads (" + std::to_string(s.n_heads) + ") is not a multiple of num_key_value_heads (" +
        std::to_string(s.n_kv_heads) + ")");
  try {
    check_model_shape(&s, "config.json");
  } catch (const Error &e) {
    bad(path + ": " + e.what());
  }
  check_weights(c, s);
  return s;
}

}  // namespace checkpoint
}  // namespace s2ft
