// A Hugging Face LLaMA checkpoint folder, loaded whole into memory:
//   config.json  (hidden_size, num_hidden_layers, num_attention_heads,
//                 num_key_value_heads, intermediate_size, head_dim, ...)
//   model.safetensors, or the shards named in model.safetensors.index.json
//   ("weight_map": tensor name -> shard file).
// Each shard is kept as its exact file image, so saving writes every byte
// that was not changed back unchanged (same header, same tensor order, same
// shard split): only the data of edited tensors differs. The seven
// projection weights of every layer are exposed as s2ft_tensor descriptors
// over those bytes, so library calls edit the checkpoint in place. For a
// summary only the headers are read (Contents::kHeadersOnly).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {
namespace cli {

// The seven projections of a LLaMA block, in s2ft_layer_weights order.
enum Projection { kQ = 0, kK, kV, kO, kGate, kUp, kDown, kNumProjections };

// "model.layers.{layer}.self_attn.q_proj.weight" etc.
std::string projection_name(int32_t layer, int projection);
// The projection weight a target trains (o, v, down, up).
int target_projection(int32_t target);
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

class Checkpoint {
 public:
  // What load() reads: everything, or (for summaries) config.json, the
  // index and the safetensors headers, never tensor data. A headers-only
  // checkpoint has no weights: weight(), layer(), bytes() and save() fail.
  enum class Contents { kWeights, kHeadersOnly };

  // Reads and validates the folder. Throws CliError naming the file and
  // what is wrong with it. Every file is read only if it is a regular file
  // (io::InputFile). config.json is checked against the tensors the headers
  // declare before any tensor data is read, so a config claiming more
  // layers or larger dimensions than the files hold fails without reading or
  // allocating for the claim; and the data is read only when it fits in the
  // memory this process may use.
  static std::unique_ptr<Checkpoint> load(const std::string &dir, Contents contents = Contents::kWeights);

  Checkpoint(const Checkpoint &) = delete;
  Checkpoint &operator=(const Checkpoint &) = delete;

  const std::string &dir() const { return dir_; }
  const nlohmann::ordered_json &config() const { return config_; }
  const s2ft_model_shape &shape() const { return shape_; }
  bool tied_embeddings() const { return tied_; }
  std::string torch_dtype() const { return torch_dtype_; }
  bool sharded() const { return sharded_; }
  std::vector<std::string> shard_files() const;

  // Every tensor, shards in index order, file order inside a shard.
  std::vector<const io::TensorInfo *> tensors() const;
  const io::TensorInfo *find(const std::string &name) const;  // nullptr when absent
  // The tensor's raw bytes (info->end - info->begin of them).
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
  struct Shard {
    std::string file;              // name inside the folder
    std::vector<uint8_t> image;    // the whole file (empty when only headers were read)
    size_t data_start = 0;         // 8 + header length
    uint64_t file_size = 0;        // as the header was checked against
    std::vector<io::TensorInfo> tensors;
  };
  // A projection weight's descriptor and, when its bytes are not aligned to
  // the element size, an aligned working copy that save() writes back.
  struct Weight {
    s2ft_tensor tensor{};
    size_t shard = 0;
    const io::TensorInfo *info = nullptr;
    std::vector<uint64_t> staging;  // empty when the tensor points into the image
  };

  void read_config();
  void read_headers();
  std::vector<std::string> shard_list(std::map<std::string, std::string> *weight_map);
  Shard read_shard_header(const std::string &file) const;
  void add_shard(Shard shard, const std::map<std::string, std::string> &weight_map);
  void check_weights() const;
  void require_memory_for_data() const;
  void read_data();
  void read_shard_data(Shard &shard) const;
  void bind_weights();
  uint8_t *mutable_bytes(size_t shard, const io::TensorInfo &t);

  std::string dir_;
  nlohmann::ordered_json config_;
  std::string config_text_, index_text_;
  s2ft_model_shape shape_{};
  bool tied_ = false;
  std::string torch_dtype_;
  bool sharded_ = false;
  bool headers_only_ = false;
  std::vector<Shard> shards_;
  std::map<std::string, std::pair<size_t, size_t>> where_;  // name -> (shard, tensor index)
  std::vector<Weight> weights_;                              // n_layers * kNumProjections
};

}  // namespace cli
}  // namespace s2ft
