// s2ft export --format peft ADAPTER --base DIR -o OUT_DIR: writes an adapter
// as a Hugging Face PEFT LoRA adapter folder (s2ft_adapter_export_peft),
// after checking it against the base checkpoint it is meant for.
#include <algorithm>
#include <limits>
#include <memory>
#include <string>

#include "adapter_args.hpp"
#include "args.hpp"
#include "checkpoint.hpp"
#include "commands.hpp"
#include "output.hpp"
#include "printable.hpp"

namespace s2ft {
namespace cli {

const char *const kExportHelp =
    "usage: s2ft export --format peft ADAPTER --base BASE_CKPT -o OUT_DIR [--scale S] [--force]\n"
    "\n"
    "Writes ADAPTER as a Hugging Face PEFT LoRA adapter in the new folder OUT_DIR\n"
    "(adapter_config.json and adapter_model.safetensors) for the base checkpoint folder\n"
    "BASE_CKPT. Each trained weight becomes one LoRA module whose rank is its number of lines k\n"
    "and whose B*A is exactly S * delta on those lines (the other factor is one-hot), with\n"
    "lora_alpha = k, so PEFT, vLLM and the other LoRA servers of docs/lora-serving.md apply it\n"
    "without merging. A low-rank entry (a SORSA adapter's, delta = b a) becomes a module of\n"
    "its rank with lora_B = S * b and lora_A = a. Loading OUT_DIR with PEFT over BASE_CKPT\n"
    "gives (up to f32 rounding of the sums) the model that\n"
    "`s2ft merge BASE_CKPT ADAPTER:S` writes.\n"
    "\n"
    "The adapter must be for BASE_CKPT's model shape and made against its weights (base\n"
    "fingerprints, as merge checks them); BASE_CKPT must be in base order (not permuted).\n"
    "base_model_name_or_path in the config is BASE_CKPT's\n"
    "config.json \"_name_or_path\" when it has one, else BASE_CKPT as given.\n"
    "\n"
    "  --format peft              the output format (peft is the only one)\n"
    "  --base DIR                 the base checkpoint folder the adapter applies to\n"
    "  -o, --output DIR           the folder to write (must not exist or be empty)\n"
    "  --scale S                  the scale folded into the delta factor, rounded once to f32\n"
    "                             (default: the adapter's default scale)\n"
    "  --force                    export even where the adapter was made against other base weights\n";

namespace {

// What export needs from the base checkpoint folder: that the adapter fits
// its shape and weights, and the name the PEFT config records. The one
// place the command reads the checkpoint.
std::string check_base(const s2ft_adapter *adapter, const std::string &adapter_path, const std::string &base_dir,
                       bool force) {
  // LoRA servers apply the adapter to the published (base-order) weights.
  if (is_permuted_dir(base_dir))
    die(base_dir + " is permuted (it has " + kSelectionFile + "); give the base-order checkpoint the adapter is " +
        "served on (s2ft permute --inverse " + base_dir + " -o DIR)");
  std::unique_ptr<Checkpoint> ckpt = Checkpoint::load(base_dir, Checkpoint::Contents::kWeights);
  const s2ft_model_shape shape = ckpt->shape();
  require_adapter_fits(adapter, adapter_path, shape, base_dir);
  if (!force) {
    // Applying at scale 0 checks every line's base fingerprint and changes
    // no value; the lines are restored right after.
    ContextPtr ctx = make_cpu_context();
    std::vector<s2ft_layer_weights> layers;
    for (int32_t l = 0; l < shape.n_layers; ++l) layers.push_back(ckpt->layer(l));
    s2ft_model *model = nullptr;
    check(s2ft_model_create(ctx.get(), &shape, layers.data(), nullptr, &model));
    ModelPtr model_guard(model);
    const s2ft_status st = s2ft_adapter_apply(model, adapter, 0.0, 0u);
    if (st == S2FT_ERR_FORMAT) {
      const std::string message = s2ft_last_error();
      const size_t at = message.find("at layer ");
      const size_t end = message.find(':', at);
      const std::string place = at == std::string::npos ? "" : " (first at " + message.substr(at + 3, end - at - 3) + ")";
      die(adapter_path + " was made against other base weights than those of " + base_dir + place +
          "; use --force to export anyway");
    }
    check(st);
    check(s2ft_adapter_remove(model));
  }
  const nlohmann::ordered_json &config = ckpt->config();
  auto it = config.find("_name_or_path");
  if (it != config.end() && it->is_string() && !it->get<std::string>().empty()) return it->get<std::string>();
  return base_dir;
}

// "4 modules of rank 8 to 16": a summary of the ranks written.
std::string ranks_text(const s2ft_adapter *adapter) {
  s2ft_model_shape shape{};
  check(s2ft_adapter_info(adapter, &shape, nullptr, nullptr));
  int64_t modules = 0, lo = std::numeric_limits<int64_t>::max(), hi = 0;
  for (int32_t l = 0; l < shape.n_layers; ++l)
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      int64_t k = 0;
      check(s2ft_adapter_lines(adapter, l, t, nullptr, nullptr, 0, &k));
      if (k == 0) continue;
      ++modules;
      lo = std::min(lo, k);
      hi = std::max(hi, k);
    }
  for (int32_t l = 0; l < shape.n_layers; ++l)
    for (int32_t w = 0; w < S2FT_NUM_WEIGHTS; ++w) {
      int64_t k = 0;
      check(s2ft_adapter_low_rank(adapter, l, w, &k, nullptr, nullptr, nullptr));
      if (k == 0) continue;
      ++modules;
      lo = std::min(lo, k);
      hi = std::max(hi, k);
    }
  const std::string ranks = lo == hi ? std::to_string(hi) : std::to_string(lo) + " to " + std::to_string(hi);
  return std::to_string(modules) + (modules == 1 ? " module" : " modules") + " of rank " + ranks;
}

}  // namespace

int run_export(const Words &words) {
  const ParsedArgs args = parse_args(words, {"--format", "--base", "--output", "--scale"}, {"--force"});
  if (!args.has("--format")) die("--format is required (peft)");
  if (args.get("--format") != "peft")
    die("unknown --format '" + args.get("--format") + "' (the only format is peft)");
  if (args.positional.size() != 1) die("expected one ADAPTER (see --help)");
  if (!args.has("--base")) die("--base BASE_CKPT is required");
  if (!args.has("--output")) die("-o OUT_DIR is required");
  const std::string adapter_path = args.positional[0], base_dir = args.get("--base");
  s2ft_peft_export_options opts;
  check(s2ft_peft_export_options_init(&opts, S2FT_PEFT_EXPORT_OPTIONS_VERSION));
  if (args.has("--scale")) opts.scale = parse_double("--scale", args.get("--scale"));

  OutputDir out(args.get("--output"), {adapter_path, base_dir});
  AdapterPtr adapter = load_adapter(adapter_path);
  const std::string base_name = check_base(adapter.get(), adapter_path, base_dir, args.has("--force"));
  opts.base_model_name_or_path = base_name.c_str();
  out.fill([&](const std::string &dir) {
    if (s2ft_adapter_export_peft(adapter.get(), dir.c_str(), &opts) != S2FT_OK)
      die(replace_all(s2ft_last_error(), "opts->scale", "--scale"));
  });
  out.commit();
  say("exported " + adapter_path + " as a PEFT LoRA adapter (" + ranks_text(adapter.get()) + ") to " + out.given());
  return 0;
}

}  // namespace cli
}  // namespace s2ft
