// s2ft merge CKPT ADAPTER[:SCALE]... -o OUTDIR: merges adapters into a
// checkpoint's weights and writes the result as a new checkpoint.
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>

#include "adapter_args.hpp"
#include "args.hpp"
#include "checkpoint.hpp"
#include "commands.hpp"
#include "output.hpp"
#include "selection_options.hpp"

namespace s2ft {
namespace cli {

const char *const kMergeHelp =
    "usage: s2ft merge CKPT ADAPTER[:SCALE]... -o OUTDIR [--force] [--selection SEL.json]\n"
    "\n"
    "Merges the adapters into the weights of the checkpoint folder CKPT (W[line] += scale * delta,\n"
    "rounded once to the weight's dtype) and writes the result to the new folder OUTDIR. Several\n"
    "adapters are fused first (s2ft fuse); SCALE defaults to each adapter's default scale.\n"
    "If CKPT is permuted (s2ft permute), its selection is needed to find the lines:\n"
    "--selection, or CKPT/s2ft-selection.json when present; it is saved as\n"
    "OUTDIR/s2ft-selection.json, so the result is a permuted checkpoint too.\n"
    "\n"
    "  -o, --output DIR           the folder to write (must not exist or be empty)\n"
    "  --force                    merge even where the adapter was made against other base weights\n"
    "  --selection PATH           the selection CKPT is permuted by\n";

int run_merge(const Words &words) {
  const ParsedArgs args = parse_args(words, {"--output", "--selection"}, {"--force"});
  if (args.positional.size() < 2) die("expected a checkpoint folder and at least one adapter (see --help)");
  if (!args.has("--output")) die("-o OUTDIR is required");
  const std::string ckpt_dir = args.positional[0];
  std::string sel_path = args.get("--selection");
  const std::string in_selection = (std::filesystem::path(ckpt_dir) / "s2ft-selection.json").string();
  std::error_code ec;
  if (sel_path.empty() && std::filesystem::exists(in_selection, ec)) sel_path = in_selection;

  std::vector<std::string> inputs = {ckpt_dir};
  const std::vector<std::string> adapter_texts(args.positional.begin() + 1, args.positional.end());
  for (const std::string &t : adapter_texts) inputs.push_back(parse_adapter_arg(t).path);
  if (!sel_path.empty()) inputs.push_back(sel_path);

  OutputDir out(args.get("--output"), inputs);
  LoadedAdapters loaded = load_adapters(adapter_texts);
  std::unique_ptr<Checkpoint> ckpt = Checkpoint::load(ckpt_dir);
  SelectionPtr sel;
  if (!sel_path.empty()) {
    sel = load_selection(sel_path);
    require_selection_fits(sel.get(), ckpt->shape(), sel_path);
  }

  // One adapter merges directly with its scale (one rounding); several are
  // fused first (scales folded into the fused delta), then merged at scale 1.
  AdapterPtr fused;
  const s2ft_adapter *applied = loaded.adapters[0].get();
  double scale = loaded.scales[0];
  if (loaded.adapters.size() > 1) {
    fused = fuse_adapters(loaded);
    applied = fused.get();
    scale = 1.0;
  }

  ContextPtr ctx = make_cpu_context();
  const s2ft_model_shape shape = ckpt->shape();
  std::vector<s2ft_layer_weights> layers;
  for (int32_t l = 0; l < shape.n_layers; ++l) layers.push_back(ckpt->layer(l));
  s2ft_model *model = nullptr;
  check(s2ft_model_create(ctx.get(), &shape, layers.data(), sel.get(), &model));
  ModelPtr model_guard(model);
  const s2ft_status st = s2ft_adapter_apply(model, applied, scale, args.has("--force") ? S2FT_APPLY_FORCE : 0u);
  if (st == S2FT_ERR_FORMAT)
    die(std::string(s2ft_last_error()) + " (use --force to merge anyway, or --selection if CKPT is permuted)");
  check(st);
  // The merged lines stay in the weights when the model is destroyed.
  model_guard.reset();

  // A permuted result carries the selection it is permuted by (the one used
  // here, which may come from --selection rather than from the folder).
  ckpt->save(out.path(), {"s2ft-selection.json"});
  if (sel != nullptr) check(s2ft_selection_save(sel.get(), out.file("s2ft-selection.json").c_str()));
  out.commit();
  std::cout << "merged " << loaded.adapters.size() << (loaded.adapters.size() == 1 ? " adapter" : " adapters")
            << " into " << out.given() << "\n";
  return 0;
}

}  // namespace cli
}  // namespace s2ft
