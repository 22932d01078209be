// s2ft select CKPT -o SEL.json [selection options]: scores the checkpoint's
// weights and writes the selection.

#include "args.hpp"
#include "checkpoint.hpp"
#include "commands.hpp"
#include "output.hpp"
#include "printable.hpp"
#include "selection_options.hpp"

namespace s2ft {
namespace cli {

const char *const kSelectHelp =
    "usage: s2ft select CKPT -o SEL.json [selection options]\n"
    "\n"
    "Chooses the heads and FFN channels to train in every layer of the checkpoint folder CKPT\n"
    "and writes the selection (docs/selection-format.md) to SEL.json.\n"
    "\n"
    "  -o, --output PATH          the selection file to write (not inside CKPT)\n"
    S2FT_CLI_SELECTION_OPTIONS_HELP;

int run_select(const Words &words) {
  std::vector<std::string> value_options = selection_value_options();
  value_options.push_back("--output");
  const ParsedArgs args = parse_args(words, value_options, {});
  if (args.positional.size() != 1) die("expected exactly one checkpoint folder (see --help)");
  if (!args.has("--output")) die("-o SEL.json is required");
  const std::string ckpt_dir = args.positional[0], out = args.get("--output");
  const s2ft_select_options opts = select_options_from_args(args);
  const int32_t principal_rank = principal_rank_from_args(args, opts);
  check_output_file(out, {ckpt_dir});
  // A selection indexes units in base order; a permuted folder's weights
  // are not in that order, so its scores would pick the wrong units.
  if (is_permuted_dir(ckpt_dir))
    die(ckpt_dir + " is permuted (it has " + kSelectionFile +
        "); select on the base checkpoint (undo the permutation with s2ft permute --inverse)");

  std::unique_ptr<Checkpoint> ckpt = Checkpoint::load(ckpt_dir);
  ContextPtr ctx = make_cpu_context();
  SelectionPtr sel = select_for_checkpoint(ctx.get(), *ckpt, opts, principal_rank);
  check(s2ft_selection_save(sel.get(), out.c_str()));
  say("wrote selection " + out);
  return 0;
}

}  // namespace cli
}  // namespace s2ft
