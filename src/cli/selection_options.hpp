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
// The --help text describing them.
const char *selection_options_help();

// Whether any selection option was given.
bool has_selection_options(const ParsedArgs &args);

// Turns the options into s2ft_select_options (throws CliError naming a bad one).
s2ft_select_options select_options_from_args(const ParsedArgs &args);

// Scores the checkpoint's weights (for the weight strategy) and selects.
SelectionPtr select_for_checkpoint(s2ft_context *ctx, Checkpoint &ckpt, const s2ft_select_options &opts);

// Target names as used on the command line: "o", "v", "down", "up".
const char *target_name(int32_t target);

// Checks that a selection was made for the checkpoint's shape.
void require_selection_fits(const s2ft_selection *sel, const s2ft_model_shape &shape, const std::string &what);

}  // namespace cli
}  // namespace s2ft
