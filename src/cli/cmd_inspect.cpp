// s2ft inspect PATH: a readable summary of a checkpoint folder, an adapter,
// a selection file or any safetensors file.
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "args.hpp"
#include "checkpoint.hpp"
#include "commands.hpp"
#include "file_kind.hpp"
#include "handles.hpp"
#include "io/input_file.hpp"
#include "io/safetensors.hpp"
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
    "                        scale, targets, lines per layer and target, parameter count\n"
    "  a selection           (.json) model shape, targets, selected units per layer\n"
    "  any safetensors file  its tensors (name, dtype, shape) and metadata (header only)\n"
    "What PATH is comes from its content, not its name.\n";

namespace {

const int32_t kTargets[S2FT_NUM_TARGETS] = {S2FT_TARGET_O, S2FT_TARGET_V, S2FT_TARGET_DOWN, S2FT_TARGET_UP};

std::string shape_json(const std::vector<int64_t> &shape) { return nlohmann::json(shape).dump(); }

void print_model_shape(const s2ft_model_shape &s) {
  std::cout << "  layers " << s.n_layers << ", d_model " << s.d_model << ", heads " << s.n_heads << " (kv heads "
            << s.n_kv_heads << ", head_dim " << s.head_dim << "), d_ff " << s.d_ff << "\n";
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

void inspect_checkpoint(const std::string &dir) {
  // A summary needs the shapes and dtypes only: never read tensor data.
  std::unique_ptr<Checkpoint> c = Checkpoint::load(dir, Checkpoint::Contents::kHeadersOnly);
  std::map<std::string, int64_t> dtype_counts;
  for (const io::TensorInfo *t : c->tensors()) ++dtype_counts[t->dtype];
  std::cout << "checkpoint " << dir << "\n";
  print_model_shape(c->shape());
  std::cout << "  dtypes:";
  for (const auto &kv : dtype_counts) std::cout << " " << kv.first << " (" << kv.second << " tensors)";
  if (!c->torch_dtype().empty()) std::cout << "; config torch_dtype " << c->torch_dtype();
  std::cout << "\n  tensors: " << c->tensors().size() << ", parameters: " << c->parameter_count() << "\n";
  std::cout << "  tied embeddings: " << (c->tied_embeddings() ? "yes" : "no")
            << (c->find("lm_head.weight") ? " (lm_head.weight present)" : "") << "\n";
  const std::vector<std::string> files = c->shard_files();
  if (c->sharded()) {
    std::cout << "  sharded: " << files.size() << " files (model.safetensors.index.json):";
    for (const std::string &f : files) std::cout << " " << f;
    std::cout << "\n";
  } else {
    std::cout << "  single file: model.safetensors\n";
  }
  if (is_permuted_dir(dir))
    std::cout << "  permuted: yes (s2ft-selection.json; undo with s2ft permute --inverse)\n";
}

void inspect_selection(const std::string &path) {
  SelectionPtr sel = load_selection(path);
  s2ft_model_shape s{};
  uint32_t mask = 0;
  check(s2ft_selection_shape(sel.get(), &s));
  check(s2ft_selection_targets(sel.get(), &mask));
  std::cout << "selection " << path << "\n";
  print_model_shape(s);
  std::cout << "  targets: " << mask_text(mask) << "\n";
  // The granularity and the options it was made with are informative
  // members of the (already validated) file.
  try {
    const nlohmann::json j = nlohmann::json::parse(io::read_file(path, size_t(256) << 20));
    if (j.contains("head_granularity") && j["head_granularity"].is_string())
      std::cout << "  head granularity: " << j["head_granularity"].get<std::string>() << "\n";
    if (j.contains("options")) std::cout << "  made with: " << j["options"].dump() << "\n";
  } catch (const std::exception &) {
  }
  std::cout << "  per layer (O: query heads, V: KV heads, DOWN/UP: channels; base order):\n";
  int64_t trained = 0;
  for (int32_t l = 0; l < s.n_layers; ++l) {
    std::cout << "    layer " << l << ":";
    for (int32_t t : kTargets) {
      if (!(mask & S2FT_TARGET_BIT(t))) continue;
      int64_t n = 0, lines = 0;
      check(s2ft_selection_indices(sel.get(), l, t, S2FT_INDEX_UNITS, nullptr, 0, &n));
      std::vector<int64_t> units(static_cast<size_t>(n));
      check(s2ft_selection_indices(sel.get(), l, t, S2FT_INDEX_UNITS, units.data(), n, &n));
      check(s2ft_selection_indices(sel.get(), l, t, S2FT_INDEX_LINES, nullptr, 0, &lines));
      trained += lines * s.d_model;  // every trained line is d_model long
      std::cout << "  " << target_name(t) << " " << list_text(units);
    }
    std::cout << "\n";
  }
  std::cout << "  trained parameters: " << trained << "\n";
}

void inspect_adapter(const std::string &path) {
  AdapterPtr a = load_adapter(path);
  s2ft_model_shape s{};
  double scale = 0.0;
  uint32_t mask = 0;
  check(s2ft_adapter_info(a.get(), &s, &scale, &mask));
  std::cout << "adapter " << path << "\n";
  std::cout << "  name: \"" << s2ft_adapter_name(a.get()) << "\"\n";
  std::cout << "  default scale: " << scale << "\n";
  print_model_shape(s);
  std::cout << "  targets: " << mask_text(mask) << "\n";
  std::cout << "  lines per layer:\n";
  int64_t params = 0;
  for (int32_t l = 0; l < s.n_layers; ++l) {
    std::cout << "    layer " << l << ":";
    for (int32_t t : kTargets) {
      if (!(mask & S2FT_TARGET_BIT(t))) continue;
      int64_t k = 0;
      check(s2ft_adapter_lines(a.get(), l, t, nullptr, nullptr, 0, &k));
      params += k * s.d_model;  // every line is d_model long
      std::cout << "  " << target_name(t) << " " << k;
    }
    std::cout << "\n";
  }
  std::cout << "  parameters: " << params << "\n";
}

void inspect_safetensors(const std::string &path) {
  const io::SafetensorsHeader h = io::read_safetensors_header(path);
  std::cout << "safetensors " << path << "\n";
  for (const auto &kv : h.metadata) std::cout << "  metadata " << kv.first << ": " << kv.second << "\n";
  uint64_t params = 0;
  for (const io::TensorInfo &t : h.tensors) {
    uint64_t n = 1;
    for (int64_t e : t.shape) n *= static_cast<uint64_t>(e);
    params += n;
    std::cout << "  " << t.name << "  " << t.dtype << " " << shape_json(t.shape) << "\n";
  }
  std::cout << "  tensors: " << h.tensors.size() << ", elements: " << params << "\n";
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
