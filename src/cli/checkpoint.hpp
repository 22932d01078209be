// A Hugging Face LLaMA checkpoint folder as the tool uses it, over the
// library's public checkpoint API (s2ft_checkpoint: memory-mapped,
// copy-on-write): config.json, the tensors of every shard, and descriptors
// of the seven projection weights of every layer that library calls edit in
// place (in this process's copy only). save() writes the current contents
// with the library's writer, so every byte that was not changed is written
// back unchanged (same headers, same tensor order, same shard split).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {
namespace cli {

using checkpoint::kNumProjections;
using checkpoint::projection_name;     // "model.layers.{layer}.self_attn.q_proj.weight" etc.
using checkpoint::Projection;
using checkpoint::target_projection;   // the projection weight a target trains (o, v, down, up)
using checkpoint::kQ;
using checkpoint::kK;
using checkpoint::kV;
using checkpoint::kO;
using checkpoint::kGate;
using checkpoint::kUp;
using checkpoint::kDown;

// Whether a target's lines are columns of its weight (O, DOWN) or rows (V, UP).
bool trains_columns(int32_t target);
// "model.layers.3.mlp.down_proj.weight column 17", for messages.
std::string line_text(int32_t layer, int32_t target, int64_t line);
// "layers 5, d_model 64, heads 8/4 kv, head_dim 8, d_ff 172", for messages.
std::string shape_text(const s2ft_model_shape &shape);

// Whether `dir` looks like a checkpoint folder (has config.json, of any
// kind: the reader then says what is wrong with it).
bool is_checkpoint_dir(const std::string &dir);

// The file a permuted checkpoint carries its selection in; `merge` and
// `permute --inverse` read it, so only `permute` and `merge` may write it.
inline const char *const kSelectionFile = "s2ft-selection.json";

// Whether a checkpoint folder is permuted (holds kSelectionFile).
bool is_permuted_dir(const std::string &dir);

// A tensor as the tool lists it: name, safetensors dtype, shape, bytes.
struct TensorEntry {
  std::string name, dtype;
  std::vector<int64_t> shape;
  uint64_t nbytes = 0;
};

class Checkpoint {
 public:
  // What load() prepares: the projection weights' descriptors too, or (for
  // summaries) only the configuration, the model shape and the tensor
  // listing. Either way the files are mapped, validated and checked against
  // config.json, and no tensor data is read until it is used.
  enum class Contents { kWeights, kHeadersOnly };

  // Opens and validates the folder. Throws CliError naming the file and
  // what is wrong with it.
  static std::unique_ptr<Checkpoint> load(const std::string &dir, Contents contents = Contents::kWeights);
  ~Checkpoint();

  Checkpoint(const Checkpoint &) = delete;
  Checkpoint &operator=(const Checkpoint &) = delete;

  const std::string &dir() const { return dir_; }
  const nlohmann::ordered_json &config() const { return config_; }
  const s2ft_model_shape &shape() const { return shape_; }
  bool tied_embeddings() const { return tied_; }
  std::string torch_dtype() const { return torch_dtype_; }
  bool sharded() const { return sharded_; }
  const std::vector<std::string> &shard_files() const { return files_; }
  s2ft_checkpoint *handle() const { return ckpt_; }

  // Every tensor, shards in index order, file order inside a shard.
  const std::vector<TensorEntry> &tensors() const { return tensors_; }
  const TensorEntry *find(const std::string &name) const;  // nullptr when absent
  // The tensor's current bytes (nbytes of them).
  const uint8_t *bytes(const std::string &name) const;
  uint64_t parameter_count() const;

  // Descriptors of one layer's projection weights (all seven set). They stay
  // valid as long as the checkpoint; library calls through them edit it.
  s2ft_layer_weights layer(int32_t layer);
  s2ft_tensor *weight(int32_t layer, int projection);

  // Writes the checkpoint into `out_dir` (an existing, empty folder): the
  // same files with the same names, config.json and the index copied byte
  // for byte, and every other plain file of the input folder (tokenizer,
  // generation config) copied unless its name is in `skip_files`. Each file
  // is written atomically.
  void save(const std::string &out_dir, const std::set<std::string> &skip_files);

 private:
  Checkpoint() = default;
  void read_config();
  void list_tensors();
  void bind_weights();

  std::string dir_;
  s2ft_checkpoint *ckpt_ = nullptr;
  nlohmann::ordered_json config_;
  s2ft_model_shape shape_{};
  bool tied_ = false;
  std::string torch_dtype_;
  bool headers_only_ = false;
  bool sharded_ = false;
  std::vector<std::string> files_;
  std::vector<TensorEntry> tensors_;
  std::map<std::string, size_t> where_;  // name -> tensors_ index
  std::vector<s2ft_tensor> weights_;     // n_layers * kNumProjections
};

}  // namespace cli
}  // namespace s2ft
