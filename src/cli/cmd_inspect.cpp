// s2ft inspect PATH: a readable summary of a checkpoint folder, an adapter,
// a selection file or any safetensors file.
#include <cstdio>
#include <limits>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "args.hpp"
#include "checkpoint.hpp"
#include "commands.hpp"
#include "file_kind.hpp"
#include "handles.hpp"
#include "io/input_file.hpp"
#include "model_shape.hpp"
#include "io/safetensors.hpp"
#include "printable.hpp"
#include "selection_options.hpp"

namespace s2ft {
namespace cli {

const char *const kInspectHelp =
    "usage: s2ft inspect PATH\n"
    "\n"
    "Prints a summary of PATH:\n"
    "  a checkpoint folder   model shape, dtypes, tensor and parameter counts, sharding\n"
    "                        (from config.json and the safetensors headers only)\n"
    "  an adapter            (.safetensors with __metadata__ format s2ft-adapter) name, default\n"
    "                        scale, targets, lines per layer and target, parameter count and\n"
    "                        its metadata (provenance), sorted by key\n"
    "  a selection           (.json) model shape, targets, selected units per layer\n"
    "  any safetensors file  its tensors (name, dtype, shape) and metadata (header only)\n"
    "What PATH is comes from its content, not its name.\n";

namespace {

const int32_t kTargets[S2FT_NUM_TARGETS] = {S2FT_TARGET_O, S2FT_TARGET_V, S2FT_TARGET_DOWN, S2FT_TARGET_UP};

std::string shape_json(const std::vector<int64_t> &shape) { return nlohmann::json(shape).dump(); }

void print_model_shape(const s2ft_model_shape &s) {
  say("  layers " + std::to_string(s.n_layers) + ", d_model " + std::to_string(s.d_model) + ", heads " +
      std::to_string(s.n_heads) + " (kv heads " + std::to_string(s.n_kv_heads) + ", head_dim " +
      std::to_string(s.head_dim) + "), d_ff " + std::to_string(s.d_ff));
}

std::string mask_text(uint32_t mask) {
  std::string out;
  for (int32_t t : kTargets)
    if (mask & S2FT_TARGET_BIT(t)) out += (out.empty() ? "" : ",") + std::string(target_name(t));
  return out.empty() ? "none" : out;
}

// "[1, 4, 7]" for short lists, "12 units" for long ones.
std::string list_text(const std::vector<int64_t> &v) {
  if (v.size() > 12) return std::to_string(v.size()) + " units";
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
  return out + "]";
}

// The weight lines one selected unit trains: head_dim per head (a KV group
// under by-group O is n_heads / n_kv_heads query heads), one per channel.
// Counted, not listed: a selection's head_dim is backed by no array in the
// file, and listing the lines would allocate for whatever it claims.
int64_t lines_per_unit(const s2ft_model_shape &s, int32_t target, const std::string &granularity) {
  if (target == S2FT_TARGET_DOWN || target == S2FT_TARGET_UP) return 1;
  const int64_t heads = target == S2FT_TARGET_O && granularity == "by_group" ? s.n_heads / s.n_kv_heads : 1;
  return heads * s.head_dim;
}

// Counts from a file's claims (head_dim, d_model) can exceed int64; they
// stop at kSaturated instead of overflowing.
const int64_t kSaturated = std::numeric_limits<int64_t>::max();

int64_t saturating_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? kSaturated : r;
}

int64_t saturating_add(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? kSaturated : r;
}

// A number as the stream prints it (a scale: "0.5", "1", "1e-05").
std::string number_text(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

void inspect_checkpoint(const std::string &dir) {
  // A summary needs the shapes and dtypes only: never read tensor data.
  std::unique_ptr<Checkpoint> c = Checkpoint::load(dir, Checkpoint::Contents::kHeadersOnly);
  std::map<std::string, int64_t> dtype_counts;
  for (const TensorEntry &t : c->tensors()) ++dtype_counts[t.dtype];
  say("checkpoint " + dir);
  print_model_shape(c->shape());
  std::string dtypes = "  dtypes:";
  for (const auto &kv : dtype_counts) dtypes += " " + kv.first + " (" + std::to_string(kv.second) + " tensors)";
  if (!c->torch_dtype().empty()) dtypes += "; config torch_dtype " + c->torch_dtype();
  say(dtypes);
  say("  tensors: " + std::to_string(c->tensors().size()) + ", parameters: " + std::to_string(c->parameter_count()));
  say(std::string("  tied embeddings: ") + (c->tied_embeddings() ? "yes" : "no") +
      (c->find("lm_head.weight") ? " (lm_head.weight present)" : ""));
  const std::vector<std::string> files = c->shard_files();
  if (c->sharded()) {
    std::string line = "  sharded: " + std::to_string(files.size()) + " files (model.safetensors.index.json):";
    for (const std::string &f : files) line += " " + f;
    say(line);
  } else {
    say("  single file: model.safetensors");
  }
  if (is_permuted_dir(dir)) say("  permuted: yes (s2ft-selection.json; undo with s2ft permute --inverse)");
}

void inspect_selection(const std::string &path) {
  SelectionPtr sel = load_selection(path);
  s2ft_model_shape s{};
  uint32_t mask = 0;
  check(s2ft_selection_shape(sel.get(), &s));
  check(s2ft_selection_targets(sel.get(), &mask));
  say("selection " + path);
  print_model_shape(s);
  say("  targets: " + mask_text(mask));
  // The granularity (the line counts below need it; the API has no getter)
  // and the options it was made with, from the (already validated) file.
  std::string granularity;
  try {
    const nlohmann::json j = nlohmann::json::parse(io::read_file(path, size_t(256) << 20));
    if (j.contains("head_granularity") && j["head_granularity"].is_string())
      granularity = j["head_granularity"].get<std::string>();
    if (!granularity.empty()) say("  head granularity: " + granularity);
    if (j.contains("options")) say("  made with: " + j["options"].dump());
  } catch (const std::exception &) {
  }
  say("  per layer (O: query heads, V: KV heads, DOWN/UP: channels; base order):");
  int64_t trained = 0;
  for (int32_t l = 0; l < s.n_layers; ++l) {
    std::string line = "    layer " + std::to_string(l) + ":";
    for (int32_t t : kTargets) {
      if (!(mask & S2FT_TARGET_BIT(t))) continue;
      int64_t n = 0;
      check(s2ft_selection_indices(sel.get(), l, t, S2FT_INDEX_UNITS, nullptr, 0, &n));
      std::vector<int64_t> units(static_cast<size_t>(n));
      check(s2ft_selection_indices(sel.get(), l, t, S2FT_INDEX_UNITS, units.data(), n, &n));
      // Every trained line is d_model long.
      trained = saturating_add(trained, saturating_mul(saturating_mul(n, lines_per_unit(s, t, granularity)), s.d_model));
      line += "  " + std::string(target_name(t)) + " " + list_text(units);
    }
    say(line);
  }
  say("  trained parameters: " + (trained == kSaturated ? "more than 2^63" : std::to_string(trained)));
}

void inspect_adapter(const std::string &path) {
  AdapterPtr a = load_adapter(path);
  s2ft_model_shape s{};
  double scale = 0.0;
  uint32_t mask = 0;
  check(s2ft_adapter_info(a.get(), &s, &scale, &mask));
  say("adapter " + path);
  say("  name: \"" + std::string(s2ft_adapter_name(a.get())) + "\"");
  say("  default scale: " + number_text(scale));
  print_model_shape(s);
  say("  targets: " + mask_text(mask));
  say("  lines per layer:");
  int64_t params = 0;
  for (int32_t l = 0; l < s.n_layers; ++l) {
    std::string line = "    layer " + std::to_string(l) + ":";
    for (int32_t t : kTargets) {
      if (!(mask & S2FT_TARGET_BIT(t))) continue;
      int64_t k = 0;
      check(s2ft_adapter_lines(a.get(), l, t, nullptr, nullptr, 0, &k));
      params += k * s.d_model;  // every line is d_model long
      line += "  " + std::string(target_name(t)) + " " + std::to_string(k);
    }
    say(line);
  }
  say("  parameters: " + std::to_string(params));
  // Unstructured sparse entries (format version 3) and low-rank entries
  // (version 4), each shown only when there are some.
  static const char *const kWeightNames[S2FT_NUM_WEIGHTS] = {"o", "v", "down", "up", "q", "k", "gate"};
  const auto weights_text = [](uint32_t m) {
    std::string out;
    for (int32_t w = 0; w < S2FT_NUM_WEIGHTS; ++w)
      if (m & S2FT_WEIGHT_BIT(w)) out += (out.empty() ? "" : ",") + std::string(kWeightNames[w]);
    return out;
  };
  uint32_t sparse_mask = 0;
  int64_t sparse_total = 0;
  check(s2ft_adapter_sparse_info(a.get(), &sparse_mask, &sparse_total));
  if (sparse_total > 0) {
    say("  sparse entries: " + std::to_string(sparse_total) + " (weights " + weights_text(sparse_mask) + ")");
    for (int32_t l = 0; l < s.n_layers; ++l) {
      std::string line = "    layer " + std::to_string(l) + ":";
      for (int32_t w = 0; w < S2FT_NUM_WEIGHTS; ++w) {
        if (!(sparse_mask & S2FT_WEIGHT_BIT(w))) continue;
        int64_t n = 0;
        check(s2ft_adapter_sparse(a.get(), l, w, nullptr, nullptr, 0, &n, nullptr));
        line += "  " + std::string(kWeightNames[w]) + " " + std::to_string(n);
      }
      say(line);
    }
  }
  uint32_t low_rank_mask = 0;
  int64_t low_rank_total = 0;
  check(s2ft_adapter_low_rank_info(a.get(), &low_rank_mask, &low_rank_total));
  if (low_rank_total > 0) {
    say("  low-rank entries: " + std::to_string(low_rank_total) + " (weights " + weights_text(low_rank_mask) +
        "), rank per layer:");
    int64_t factor_params = 0;
    for (int32_t l = 0; l < s.n_layers; ++l) {
      std::string line = "    layer " + std::to_string(l) + ":";
      for (int32_t w = 0; w < S2FT_NUM_WEIGHTS; ++w) {
        if (!(low_rank_mask & S2FT_WEIGHT_BIT(w))) continue;
        int64_t rank = 0, rows = 0, cols = 0;
        check(s2ft_adapter_low_rank(a.get(), l, w, &rank, nullptr, nullptr, nullptr));
        weight_shape(s, w, &rows, &cols);
        factor_params = saturating_add(factor_params, saturating_mul(rank, rows + cols));
        line += "  " + std::string(kWeightNames[w]) + " " + std::to_string(rank);
      }
      say(line);
    }
    say("  low-rank factor parameters: " +
        (factor_params == kSaturated ? "more than 2^63" : std::to_string(factor_params)));
  }
  int64_t n_meta = 0;
  check(s2ft_adapter_meta_count(a.get(), &n_meta));
  if (n_meta == 0) {
    say("  metadata: none");
    return;
  }
  say("  metadata (" + std::to_string(n_meta) + " keys):");
  for (int64_t i = 0; i < n_meta; ++i) {  // ascending by key
    const char *key = nullptr, *value = nullptr;
    check(s2ft_adapter_meta_at(a.get(), i, &key, &value));
    say("    " + std::string(key) + ": " + value);
  }
}

void inspect_safetensors(const std::string &path) {
  const io::SafetensorsHeader h = io::read_safetensors_header(path);
  say("safetensors " + path);
  for (const auto &kv : h.metadata) say("  metadata " + kv.first + ": " + kv.second);
  uint64_t params = 0;
  for (const io::TensorInfo &t : h.tensors) {
    uint64_t n = 1;
    for (int64_t e : t.shape) n *= static_cast<uint64_t>(e);
    params += n;
    say("  " + t.name + "  " + t.dtype + " " + shape_json(t.shape));
  }
  say("  tensors: " + std::to_string(h.tensors.size()) + ", elements: " + std::to_string(params));
}

}  // namespace

int run_inspect(const Words &words) {
  const ParsedArgs args = parse_args(words, {}, {});
  if (args.positional.size() != 1) die("expected exactly one PATH (see --help)");
  const std::string path = args.positional[0];
  // By what the file is, not by its name.
  const FileKind kind = file_kind(path);
  switch (kind) {
    case FileKind::kMissing: die(path + " does not exist");
    case FileKind::kCheckpoint: inspect_checkpoint(path); break;
    case FileKind::kSelection:
    case FileKind::kBadJson: inspect_selection(path); break;  // the loader says what is wrong
    case FileKind::kAdapter: inspect_adapter(path); break;
    case FileKind::kOptimizerState:
    case FileKind::kModelWeights:
    case FileKind::kSafetensors:
    case FileKind::kBadSafetensors: inspect_safetensors(path); break;  // the header reader says what is wrong
    default: die(path + " is " + kind_phrase(kind) + "; inspect takes a checkpoint folder, an adapter, "
                 "a selection or a safetensors file");
  }
  return 0;
}

}  // namespace cli
}  // namespace s2ft
