// The selection options shared by `s2ft select` and `s2ft permute`, and
// making a selection from a checkpoint's weights with them.
#pragma once

#include <string>
#include <vector>

#include "args.hpp"
#include "checkpoint.hpp"
#include "handles.hpp"

namespace s2ft {
namespace cli {

// Option names (with dashes) that selection_from_args() reads.
std::vector<std::string> selection_value_options();

// The --help text describing every one of them, a string literal so that
// `select` and `permute` can append it to their own help.
#define S2FT_CLI_SELECTION_OPTIONS_HELP                                                                       \
  "\n"                                                                                                        \
  "Selection options:\n"                                                                                      \
  "  --strategy weight|principal|random\n"                                                                    \
  "                             score each unit by the norm of its trained weight slice, by the\n"         \
  "                             norm of its slice of the weight's rank-R SVD approximation W_R\n"          \
  "                             (LIFT's principal weights; needs --principal-rank), or pick at\n"          \
  "                             random (default weight). These are the strategies a checkpoint\n"         \
  "                             alone allows: activation, weight-activation and gradient scores\n"          \
  "                             need statistics over calibration data, which s2ft does not have\n"          \
  "                             (the library computes them: s2ft_statistics_add_activation,\n"              \
  "                             s2ft_statistics_add_gradient, then s2ft_select)\n"                          \
  "  --principal-rank R         the rank R of W_R for --strategy principal, in [1, min(rows, cols)]\n"    \
  "                             of every targeted weight\n"                                                 \
  "  --order largest|smallest   keep the highest or the lowest scores (default largest)\n"                  \
  "  --targets LIST             comma-separated among o, down, v, up (default o,down)\n"                    \
  "  --ratio-o R, --ratio-down R, --ratio-v R, --ratio-up R\n"                                              \
  "                             fraction in (0, 1] of the target's units to train;\n"                       \
  "                             defaults: o 0.05, down 0.02 (v and up need a ratio or a count)\n"          \
  "  --count-o N, --count-down N, --count-v N, --count-up N\n"                                              \
  "                             number of the target's units to train, instead of a ratio\n"               \
  "  --allocation per-layer|global\n"                                                                        \
  "                             the budget in every layer, or one budget ranked across all\n"              \
  "                             layers (default per-layer)\n"                                               \
  "  --heads by-group|single    what an o unit is: a whole KV group (the query heads sharing one\n"        \
  "                             KV head, contiguous after permuting) or a single query head\n"              \
  "                             (default by-group)\n"                                                       \
  "  --seed N                   seed of the random strategy and of tie-breaking (default 0)\n"              \
  "\n"                                                                                                        \
  "Units: o counts KV groups under --heads by-group (query heads under --heads single),\n"                  \
  "v counts KV heads, down and up count FFN channels; budgets are per layer unless\n"                        \
  "--allocation global.\n"

// Whether any selection option was given.
bool has_selection_options(const ParsedArgs &args);

// Turns the options into s2ft_select_options (throws CliError naming a bad one).
s2ft_select_options select_options_from_args(const ParsedArgs &args);

// --principal-rank: required with --strategy principal, refused with the
// others; 0 when not used.
int32_t principal_rank_from_args(const ParsedArgs &args, const s2ft_select_options &opts);

// Checks the budgets (and the principal rank) against the checkpoint,
// scores its weights (for the weight and principal strategies) and selects.
SelectionPtr select_for_checkpoint(s2ft_context *ctx, Checkpoint &ckpt, const s2ft_select_options &opts,
                                   int32_t principal_rank = 0);

// Target names as used on the command line: "o", "v", "down", "up".
const char *target_name(int32_t target);

// Checks that a selection was made for the checkpoint's shape.
void require_selection_fits(const s2ft_selection *sel, const s2ft_model_shape &shape, const std::string &what);

}  // namespace cli
}  // namespace s2ft
