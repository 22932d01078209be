// s2ft permute CKPT -o OUTDIR: co-permutes every layer so the selected units
// come first, or (--inverse) undoes that.
#include <filesystem>

#include "args.hpp"
#include "checkpoint.hpp"
#include "commands.hpp"
#include "output.hpp"
#include "printable.hpp"
#include "progress.hpp"
#include "selection_options.hpp"

namespace s2ft {
namespace cli {

const char *const kPermuteHelp =
    "usage: s2ft permute CKPT -o OUTDIR [--selection SEL.json | selection options]\n"
    "       s2ft permute --inverse CKPT -o OUTDIR [--selection SEL.json]\n"
    "\n"
    "Co-permutes q, k, v, o, gate, up and down of every layer of the checkpoint folder CKPT so\n"
    "that the selected heads and channels come first (the model's outputs do not change), and\n"
    "writes the result to the new folder OUTDIR with the selection as OUTDIR/s2ft-selection.json.\n"
    "The selection is read from --selection, or made from the selection options (as for\n"
    "`s2ft select`). With --inverse the permutation of the selection is undone (byte-exact); the\n"
    "selection defaults to CKPT/s2ft-selection.json.\n"
    "\n"
    "  -o, --output DIR           the folder to write (must not exist or be empty)\n"
    "  --selection PATH           the selection to permute by\n"
    "  --inverse                  undo the permutation\n"
    S2FT_CLI_SELECTION_OPTIONS_HELP;

int run_permute(const Words &words) {
  std::vector<std::string> value_options = selection_value_options();
  value_options.push_back("--output");
  value_options.push_back("--selection");
  const ParsedArgs args = parse_args(words, value_options, {"--inverse"});
  if (args.positional.size() != 1) die("expected exactly one checkpoint folder (see --help)");
  if (!args.has("--output")) die("-o OUTDIR is required");
  const std::string ckpt_dir = args.positional[0];
  const bool inverse = args.has("--inverse");
  const std::string in_selection = (std::filesystem::path(ckpt_dir) / kSelectionFile).string();
  const bool input_permuted = is_permuted_dir(ckpt_dir);

  std::string sel_path = args.get("--selection");
  if (has_selection_options(args)) {
    if (inverse) die("--inverse takes --selection, not selection options");
    if (!sel_path.empty()) die("give either --selection or selection options, not both");
  }
  if (inverse && sel_path.empty()) {
    if (!input_permuted) die("--inverse needs --selection SEL.json (" + in_selection + " does not exist)");
    sel_path = in_selection;
  }
  if (!inverse && input_permuted)
    die(ckpt_dir + " is already permuted (it has " + kSelectionFile + "); undo it first with --inverse");

  std::vector<std::string> inputs = {ckpt_dir};
  if (!sel_path.empty()) inputs.push_back(sel_path);
  const s2ft_select_options opts = sel_path.empty() ? select_options_from_args(args) : s2ft_select_options{};
  const int32_t principal_rank = sel_path.empty() ? principal_rank_from_args(args, opts) : 0;

  OutputDir out(args.get("--output"), inputs);
  std::unique_ptr<Checkpoint> ckpt = Checkpoint::load(ckpt_dir);
  ContextPtr ctx = make_cpu_context();
  SelectionPtr sel;
  if (!sel_path.empty()) {
    sel = load_selection(sel_path);
    require_selection_fits(sel.get(), ckpt->shape(), sel_path);
  } else {
    sel = select_for_checkpoint(ctx.get(), *ckpt, opts, principal_rank);
  }

  const int32_t n_layers = ckpt->shape().n_layers;
  {
    Progress progress(inverse ? "unpermuting layer" : "permuting layer", n_layers);
    for (int32_t l = 0; l < n_layers; ++l) {
      progress.step(l + 1);
      const s2ft_layer_weights w = ckpt->layer(l);
      check(s2ft_permute(ctx.get(), sel.get(), l, &w, inverse ? S2FT_PERMUTE_INVERSE : S2FT_PERMUTE_FORWARD));
    }
  }
  out.fill([&](const std::string &dir) {
    ckpt->save(dir, {kSelectionFile});
    if (!inverse) check(s2ft_selection_save(sel.get(), (std::filesystem::path(dir) / kSelectionFile).c_str()));
  });
  out.commit();  // the folder appears only now, whole
  say((inverse ? "wrote unpermuted checkpoint " : "wrote permuted checkpoint ") + out.given());
  return 0;
}

}  // namespace cli
}  // namespace s2ft
