// Hugging Face LLaMA checkpoint folders (config.json + model.safetensors or
// shards listed in model.safetensors.index.json), read and written through
// libs2ft's checkpoint API: the library maps and validates the files, this
// file converts the tensors the example's model needs to float and checks
// them against config.json.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "checkpoint.hpp"
#include "s2ft_handles.hpp"

namespace fs = std::filesystem;

namespace ft {

namespace {

const char *const kConfigFile = "config.json";
const char *const kIndexFile = "model.safetensors.index.json";

[[noreturn]] void fail(const std::string &what, const std::string &problem) {
  throw std::runtime_error(what + ": " + problem);
}

// A failed libs2ft call as an error about `what`. The library's message
// starts with the names of the functions it came through
// ("s2ft_checkpoint_open: ..."), which are dropped, and then usually names
// the file it was reading; `what` goes in front unless it already starts
// with it.
void check_library(s2ft_status st, const std::string &what) {
  if (st == S2FT_OK) return;
  std::string message = s2ft_last_error();
  for (size_t colon; message.rfind("s2ft_", 0) == 0 && (colon = message.find(": ")) != std::string::npos;)
    message.erase(0, colon + 2);
  if (message.empty()) message = s2ft_status_string(st);
  if (message.rfind(what, 0) == 0) throw std::runtime_error(message);
  fail(what, message);
}

std::string join(const std::string &dir, const std::string &name) { return (fs::path(dir) / name).string(); }

nlohmann::json parse_json(const std::string &text, const std::string &what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception &) {
    fail(what, "not valid JSON");
  }
}

CheckpointPtr open_checkpoint(const std::string &path) {
  s2ft_checkpoint *raw = nullptr;
  check_library(s2ft_checkpoint_open(path.c_str(), &raw), path);
  return CheckpointPtr(raw);
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

float float_from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// IEEE half (1 sign, 5 exponent bits of bias 15, 10 mantissa bits), exactly.
float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t{h} >> 15 << 31, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0) return float_from_bits(sign) + (sign ? -1.0f : 1.0f) * std::ldexp(static_cast<float>(mantissa), -24);
  return float_from_bits(sign | (exponent == 31 ? 0xffu : exponent + 112) << 23 | mantissa << 13);
}

// bfloat16 is the top half of a float.
float bf16_to_float(uint16_t h) { return float_from_bits(uint32_t{h} << 16); }

// The elements of a compact row-major CPU view of a stored F32, F16 or BF16
// tensor (little-endian, as the host: see checkpoint_llama2c.cpp) as floats.
std::vector<float> to_floats(const s2ft_tensor &t, const std::string &dtype, int64_t count) {
  const uint8_t *p = static_cast<const uint8_t *>(t.data) + t.byte_offset;
  std::vector<float> out(static_cast<size_t>(count));
  if (dtype == "F32") {
    if (count > 0) std::memcpy(out.data(), p, out.size() * sizeof(float));
    return out;
  }
  // The library aligns every view to its element size.
  const uint16_t *h = reinterpret_cast<const uint16_t *>(p);
  const bool f16 = dtype == "F16";
  for (size_t i = 0; i < out.size(); ++i) out[i] = f16 ? f16_to_float(h[i]) : bf16_to_float(h[i]);
  return out;
}

// A tensor of the checkpoint as its file describes it.
struct StoredTensor {
  std::string dtype;
  std::vector<int64_t> shape;
};

// Every tensor of the checkpoint, by name.
std::map<std::string, StoredTensor> stored_tensors(const s2ft_checkpoint *ckpt, const std::string &dir) {
  int64_t count = 0;
  check_library(s2ft_checkpoint_tensor_count(ckpt, &count), dir);
  std::map<std::string, StoredTensor> out;
  for (int64_t i = 0; i < count; ++i) {
    const char *name = nullptr, *dtype = nullptr;
    int32_t ndim = 0;
    check_library(s2ft_checkpoint_tensor_info(ckpt, i, &name, &dtype, &ndim, nullptr, 0, nullptr), dir);
    StoredTensor t{dtype, std::vector<int64_t>(static_cast<size_t>(ndim))};
    check_library(s2ft_checkpoint_tensor_info(ckpt, i, nullptr, nullptr, &ndim, t.shape.data(), ndim, nullptr), dir);
    out.emplace(name, std::move(t));
  }
  return out;
}

bool same_shape(const s2ft_model_shape &a, const s2ft_model_shape &b) {
  return a.n_layers == b.n_layers && a.d_model == b.d_model && a.n_heads == b.n_heads && a.n_kv_heads == b.n_kv_heads &&
         a.head_dim == b.head_dim && a.d_ff == b.d_ff;
}

std::string describe_shape(const s2ft_model_shape &s) {
  return std::to_string(s.n_layers) + " layers, d_model " + std::to_string(s.d_model) + ", " +
         std::to_string(s.n_heads) + " heads (" + std::to_string(s.n_kv_heads) + " KV, head_dim " +
         std::to_string(s.head_dim) + "), d_ff " + std::to_string(s.d_ff);
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

Checkpoint load_hf_checkpoint(const std::string &dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(dir, "not a checkpoint folder (no such directory)");
  const std::string config_path = join(dir, kConfigFile);
  if (!fs::is_regular_file(config_path, ec)) fail(dir, "has no config.json (not a Hugging Face checkpoint folder)");

  // libs2ft maps the files and checks their headers, the index and
  // config.json's syntax; the tensors are views into the mapping.
  CheckpointPtr ckpt = open_checkpoint(dir);
  const char *config_text = nullptr;
  check_library(s2ft_checkpoint_config(ckpt.get(), &config_text), dir);
  if (config_text == nullptr) fail(dir, "has no config.json (not a Hugging Face checkpoint folder)");

  Checkpoint ck;
  ck.config = parse_hf_config(config_text, config_path);
  ck.weights.layers.resize(static_cast<size_t>(ck.config.n_layers));

  // Messages name the file a tensor is in when there is one file, else the
  // folder (and the index for tensors it does not list).
  int64_t n_files = 0;
  check_library(s2ft_checkpoint_file_count(ckpt.get(), &n_files), dir);
  std::string where = dir, listing = join(dir, kIndexFile);
  if (n_files == 1) {
    const char *file = nullptr;
    check_library(s2ft_checkpoint_file(ckpt.get(), 0, &file), dir);
    where = listing = join(dir, file);
  }

  const std::map<std::string, StoredTensor> stored = stored_tensors(ckpt.get(), dir);
  std::vector<std::string> missing;
  for (HfTensor &t : hf_tensors(ck.config, ck.weights)) {
    auto found = stored.find(t.name);
    if (found == stored.end()) {
      missing.push_back(t.name);
      continue;
    }
    if (found->second.shape != t.shape)
      fail(where, "tensor '" + t.name + "' has shape " + shape_text(found->second.shape) +
                      ", but config.json gives " + shape_text(t.shape));
    s2ft_tensor view;
    const s2ft_status st = s2ft_checkpoint_tensor(ckpt.get(), t.name.c_str(), &view);
    if (st == S2FT_ERR_DTYPE)
      fail(where, "tensor '" + t.name + "' has the unsupported dtype " + found->second.dtype +
                      " (only F32, F16 and BF16 are read)");
    check_library(st, where);
    *t.data = to_floats(view, found->second.dtype, element_count(t.shape));
  }
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 5; ++i) list += (i ? ", '" : "'") + missing[i] + "'";
    if (missing.size() > 5) list += ", ...";
    fail(listing, "is missing " + std::to_string(missing.size()) + " tensor" + (missing.size() > 1 ? "s: " : ": ") +
                      list);
  }

  // The library's reading of the model shape (what its models, selections
  // and merges use) must be this program's.
  s2ft_model_shape shape{};
  check_library(s2ft_checkpoint_shape(ckpt.get(), &shape), config_path);
  if (!same_shape(shape, ck.config.shape()))
    fail(config_path, "libs2ft reads the model as " + describe_shape(shape) + ", this program as " +
                          describe_shape(ck.config.shape()));
  return ck;
}

void merge_hf_checkpoint(s2ft_context *ctx, const std::string &base_dir, const std::string &adapter_path,
                         const std::string &out_dir) {
  CheckpointPtr ckpt = open_checkpoint(base_dir);
  {
    // The model's weights are views into the checkpoint: applying the
    // adapter changes this process's copy-on-write mapping, never the files.
    s2ft_model *raw = nullptr;
    check_library(s2ft_model_from_checkpoint(ctx, ckpt.get(), nullptr, nullptr, &raw), base_dir);
    ModelPtr model(raw);
    const char *paths[] = {adapter_path.c_str()};
    check_library(s2ft_model_apply_files(model.get(), paths, nullptr, 1, 0), adapter_path);
  }  // the model goes before its checkpoint; the merged weights stay
  // Same files, headers and tensor order as the base; the other files of the
  // folder (tokenizer, generation config) are copied.
  check_library(s2ft_checkpoint_write(ckpt.get(), out_dir.c_str(), nullptr, nullptr, 0, nullptr), out_dir);
}

}  // namespace ft
