// Hugging Face LLaMA checkpoint folders: config.json + model.safetensors or
// shards listed in model.safetensors.index.json.
#include <cmath>
#include <filesystem>
#include <limits>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "checkpoint.hpp"
#include "safetensors_file.hpp"

namespace fs = std::filesystem;

namespace ft {

namespace {

const char *const kConfigFile = "config.json";
const char *const kSingleFile = "model.safetensors";
const char *const kIndexFile = "model.safetensors.index.json";
// config.json and the index are small; refuse anything absurd before parsing.
const uint64_t kMaxJsonBytes = uint64_t{64} << 20;

[[noreturn]] void fail(const std::string &what, const std::string &problem) {
  throw std::runtime_error(what + ": " + problem);
}

std::string join(const std::string &dir, const std::string &name) { return (fs::path(dir) / name).string(); }

std::string read_text(const std::string &path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, kMaxJsonBytes);
  return std::string(bytes.begin(), bytes.end());
}

nlohmann::json parse_json(const std::string &text, const std::string &what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception &) {
    fail(what, "not valid JSON");
  }
}

std::string shape_text(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// One tensor of the model with its Hugging Face name and the shape the
// config gives it.
struct HfTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> *data;
};

std::vector<int64_t> layer_tensor_shape(const LlamaConfig &c, const std::string &suffix) {
  if (suffix == "input_layernorm.weight" || suffix == "post_attention_layernorm.weight") return {c.d_model};
  if (suffix == "self_attn.q_proj.weight") return {c.q_dim(), c.d_model};
  if (suffix == "self_attn.k_proj.weight" || suffix == "self_attn.v_proj.weight") return {c.kv_dim(), c.d_model};
  if (suffix == "self_attn.o_proj.weight") return {c.d_model, c.q_dim()};
  if (suffix == "mlp.gate_proj.weight" || suffix == "mlp.up_proj.weight") return {c.d_ff, c.d_model};
  if (suffix == "mlp.down_proj.weight") return {c.d_model, c.d_ff};
  throw std::logic_error("checkpoint: no shape known for the layer tensor '" + suffix + "'");
}

// Every tensor of the checkpoint in file order; lm_head only when untied.
// `w` must have config.n_layers layers.
std::vector<HfTensor> hf_tensors(const LlamaConfig &c, LlamaWeights<float> &w) {
  std::vector<HfTensor> out;
  out.push_back({"model.embed_tokens.weight", {c.vocab, c.d_model}, &w.embed});
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    w.layers[i].for_each([&](const char *suffix, std::vector<float> &t) {
      out.push_back({prefix + suffix, layer_tensor_shape(c, suffix), &t});
    });
  }
  out.push_back({"model.norm.weight", {c.d_model}, &w.final_norm});
  if (!c.tied) out.push_back({"lm_head.weight", {c.vocab, c.d_model}, &w.lm_head});
  return out;
}

int64_t element_count(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // bounded by LlamaConfig::check()
  return n;
}

// Config field readers. JSON null counts as absent, as transformers writes it.
const nlohmann::json *field(const nlohmann::json &cfg, const char *key) {
  auto it = cfg.find(key);
  return it == cfg.end() || it->is_null() ? nullptr : &*it;
}

int64_t int_field(const nlohmann::json &cfg, const std::string &what, const char *key, const int64_t *fallback) {
  const nlohmann::json *v = field(cfg, key);
  if (v == nullptr) {
    if (fallback == nullptr) fail(what, "has no \"" + std::string(key) + "\"");
    return *fallback;
  }
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    fail(what, "\"" + std::string(key) + "\" is too large");
  if (!v->is_number_integer()) fail(what, "\"" + std::string(key) + "\" must be an integer, got " + v->type_name());
  return v->get<int64_t>();
}

double number_field(const nlohmann::json &cfg, const std::string &what, const char *key, double fallback) {
  const nlohmann::json *v = field(cfg, key);
  if (v == nullptr) return fallback;
  if (!v->is_number() || !std::isfinite(v->get<double>()))
    fail(what, "\"" + std::string(key) + "\" must be a finite number");
  return v->get<double>();
}

bool bool_field(const nlohmann::json &cfg, const std::string &what, const char *key, bool fallback) {
  const nlohmann::json *v = field(cfg, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) fail(what, "\"" + std::string(key) + "\" must be true or false, got " + v->type_name());
  return v->get<bool>();
}

// bos/eos_token_id: an integer, or a list whose first entry is used (as
// newer LLaMA configs list several end-of-sequence tokens).
int64_t token_id_field(const nlohmann::json &cfg, const std::string &what, const char *key, int64_t fallback) {
  const nlohmann::json *v = field(cfg, key);
  if (v == nullptr) return fallback;
  const nlohmann::json &id = v->is_array() && !v->empty() ? (*v)[0] : *v;
  if (!id.is_number_integer()) fail(what, "\"" + std::string(key) + "\" must be a token id");
  return id.get<int64_t>();
}

// The tensors of one safetensors file, read at most once.
struct ShardCache {
  std::string dir;
  std::map<std::string, SafetensorsContents> files;
  SafetensorsContents &get(const std::string &file) {
    auto it = files.find(file);
    if (it == files.end()) it = files.emplace(file, read_safetensors(join(dir, file))).first;
    return it->second;
  }
};

// A shard name from the index must name a file directly inside the folder.
void check_shard_name(const std::string &name, const std::string &index_path) {
  if (name.empty() || name.find('/') != std::string::npos || name.find('\\') != std::string::npos ||
      name.find("..") != std::string::npos || name.find('\0') != std::string::npos)
    fail(index_path, "shard name " + quoted_name(name) + " is not a plain file name inside the folder");
}

// tensor name -> shard file, from model.safetensors.index.json.
std::map<std::string, std::string> read_weight_map(const std::string &index_path) {
  const nlohmann::json index = parse_json(read_text(index_path), index_path);
  if (!index.is_object()) fail(index_path, "not a JSON object");
  const nlohmann::json *wm = field(index, "weight_map");
  if (wm == nullptr || !wm->is_object()) fail(index_path, "has no \"weight_map\" object");
  std::map<std::string, std::string> out;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string()) fail(index_path, "weight_map entry " + quoted_name(it.key()) + " is not a file name");
    const std::string file = it.value().get<std::string>();
    check_shard_name(file, index_path);
    out[it.key()] = file;
  }
  return out;
}

}  // namespace

LlamaConfig parse_hf_config(const std::string &json_text, const std::string &what) {
  const nlohmann::json cfg = parse_json(json_text, what);
  if (!cfg.is_object()) fail(what, "not a JSON object");
  LlamaConfig c;
  c.d_model = int_field(cfg, what, "hidden_size", nullptr);
  c.n_layers = int_field(cfg, what, "num_hidden_layers", nullptr);
  c.n_heads = int_field(cfg, what, "num_attention_heads", nullptr);
  c.n_kv_heads = int_field(cfg, what, "num_key_value_heads", &c.n_heads);
  c.d_ff = int_field(cfg, what, "intermediate_size", nullptr);
  c.vocab = int_field(cfg, what, "vocab_size", nullptr);
  // head_dim defaults to hidden_size / num_attention_heads; leave it 0 (for
  // check() to reject) when that is not a whole positive number.
  int64_t head_dim = 0;
  if (c.n_heads > 0 && c.d_model > 0) {
    if (c.d_model % c.n_heads != 0 && field(cfg, "head_dim") == nullptr)
      fail(what, "hidden_size (" + std::to_string(c.d_model) + ") is not a multiple of num_attention_heads (" +
                     std::to_string(c.n_heads) + ") and there is no \"head_dim\"");
    head_dim = c.d_model / c.n_heads;
  }
  c.head_dim = int_field(cfg, what, "head_dim", &head_dim);
  const int64_t max_seq = 2048;
  c.max_seq = int_field(cfg, what, "max_position_embeddings", &max_seq);
  c.rms_eps = number_field(cfg, what, "rms_norm_eps", 1e-6);
  c.rope_theta = number_field(cfg, what, "rope_theta", 10000.0);
  c.tied = bool_field(cfg, what, "tie_word_embeddings", false);
  c.bos = token_id_field(cfg, what, "bos_token_id", 1);
  c.eos = token_id_field(cfg, what, "eos_token_id", 2);

  // Features the example's forward pass does not implement would silently
  // give a different model; refuse them.
  if (field(cfg, "rope_scaling") != nullptr) fail(what, "\"rope_scaling\" is not supported (it must be null)");
  const nlohmann::json *act = field(cfg, "hidden_act");
  if (act != nullptr && !(act->is_string() && act->get<std::string>() == "silu"))
    fail(what, "\"hidden_act\" must be \"silu\"");
  if (bool_field(cfg, what, "attention_bias", false) || bool_field(cfg, what, "mlp_bias", false))
    fail(what, "attention_bias / mlp_bias are not supported (they must be false)");

  try {
    c.check();
  } catch (const std::runtime_error &e) {
    fail(what, e.what());
  }
  if (c.bos < 0 || c.bos >= c.vocab || c.eos < 0 || c.eos >= c.vocab)
    fail(what, "bos_token_id (" + std::to_string(c.bos) + ") and eos_token_id (" + std::to_string(c.eos) +
                   ") must be token ids below vocab_size (" + std::to_string(c.vocab) + ")");
  return c;
}

void check_weight_sizes(const LlamaConfig &config, const LlamaWeights<float> &weights, const std::string &what) {
  if (weights.layers.size() != static_cast<size_t>(config.n_layers))
    fail(what, "the weights have " + std::to_string(weights.layers.size()) + " layers, the config " +
                   std::to_string(config.n_layers));
  if (config.tied && !weights.lm_head.empty())
    fail(what, "the config ties the output layer to the embedding but the weights have an lm_head");
  // hf_tensors only takes addresses; nothing is modified.
  for (const HfTensor &t : hf_tensors(config, const_cast<LlamaWeights<float> &>(weights)))
    if (t.data->size() != static_cast<size_t>(element_count(t.shape)))
      fail(what, "tensor '" + t.name + "' has " + std::to_string(t.data->size()) + " values, its shape " +
                     shape_text(t.shape) + " needs " + std::to_string(element_count(t.shape)));
}

Checkpoint load_hf_checkpoint(const std::string &dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(dir, "not a checkpoint folder (no such directory)");
  const std::string config_path = join(dir, kConfigFile);
  if (!fs::is_regular_file(config_path, ec)) fail(dir, "has no config.json (not a Hugging Face checkpoint folder)");

  Checkpoint ck;
  ck.config = parse_hf_config(read_text(config_path), config_path);
  ck.weights.layers.resize(static_cast<size_t>(ck.config.n_layers));

  // Where each tensor lives: one file, or the index's weight_map.
  const std::string index_path = join(dir, kIndexFile);
  const bool sharded = fs::exists(index_path, ec);
  std::map<std::string, std::string> weight_map;
  if (sharded) {
    weight_map = read_weight_map(index_path);
  } else if (!fs::exists(join(dir, kSingleFile), ec)) {
    fail(dir, "has neither model.safetensors nor model.safetensors.index.json");
  }

  ShardCache shards{dir, {}};
  std::vector<std::string> missing;
  for (HfTensor &t : hf_tensors(ck.config, ck.weights)) {
    std::string file = kSingleFile;
    if (sharded) {
      auto it = weight_map.find(t.name);
      if (it == weight_map.end()) {
        missing.push_back(t.name);
        continue;
      }
      file = it->second;
    }
    SafetensorsContents &contents = shards.get(file);
    auto found = contents.tensors.find(t.name);
    if (found == contents.tensors.end()) {
      if (sharded) fail(join(dir, file), "has no tensor '" + t.name + "', which " + kIndexFile + " places there");
      missing.push_back(t.name);
      continue;
    }
    if (found->second.shape != t.shape)
      fail(join(dir, file), "tensor '" + t.name + "' has shape " + shape_text(found->second.shape) +
                                 ", but config.json gives " + shape_text(t.shape));
    *t.data = std::move(found->second.data);
    contents.tensors.erase(found);
  }
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 5; ++i) list += (i ? ", '" : "'") + missing[i] + "'";
    if (missing.size() > 5) list += ", ...";
    fail(sharded ? index_path : join(dir, kSingleFile),
         "is missing " + std::to_string(missing.size()) + " tensor" + (missing.size() > 1 ? "s: " : ": ") + list);
  }
  return ck;
}

void save_hf_checkpoint(const std::string &dir, const Checkpoint &ck) {
  try {
    ck.config.check();
  } catch (const std::runtime_error &e) {
    fail(dir, std::string("cannot save: ") + e.what());
  }
  check_weight_sizes(ck.config, ck.weights, dir + ": cannot save");

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir, ec)) fail(dir, "cannot create the folder");
  // The loader prefers an index over model.safetensors, so a stale one would
  // shadow what is written here.
  if (fs::exists(join(dir, kIndexFile), ec))
    fail(dir, std::string("already holds a sharded checkpoint (") + kIndexFile + "); save into another folder");

  std::vector<TensorToWrite> tensors;
  for (const HfTensor &t : hf_tensors(ck.config, const_cast<LlamaWeights<float> &>(ck.weights)))
    tensors.push_back({t.name, t.shape, t.data});
  // transformers refuses safetensors checkpoints without format "pt".
  write_safetensors(join(dir, kSingleFile), tensors, {{"format", "pt"}});

  // config.json last: its presence marks the folder as a checkpoint.
  const LlamaConfig &c = ck.config;
  nlohmann::ordered_json cfg = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", c.d_model},
      {"num_hidden_layers", c.n_layers},
      {"num_attention_heads", c.n_heads},
      {"num_key_value_heads", c.n_kv_heads},
      {"head_dim", c.head_dim},
      {"intermediate_size", c.d_ff},
      {"vocab_size", c.vocab},
      {"max_position_embeddings", c.max_seq},
      {"rms_norm_eps", c.rms_eps},
      {"rope_theta", c.rope_theta},
      {"tie_word_embeddings", c.tied},
      {"bos_token_id", c.bos},
      {"eos_token_id", c.eos},
      {"hidden_act", "silu"},
      {"torch_dtype", "float32"},
  };
  const std::string text = cfg.dump(2) + "\n";
  write_file_atomically(join(dir, kConfigFile), text.data(), text.size());
}

}  // namespace ft
