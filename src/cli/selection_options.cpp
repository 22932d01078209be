#include "selection_options.hpp"

#include <cstring>

#include "progress.hpp"

namespace s2ft {
namespace cli {

namespace {

const int32_t kTargets[S2FT_NUM_TARGETS] = {S2FT_TARGET_O, S2FT_TARGET_V, S2FT_TARGET_DOWN, S2FT_TARGET_UP};

int32_t parse_target(const std::string &name) {
  for (int32_t t : kTargets)
    if (name == target_name(t)) return t;
  die("--targets: unknown target '" + name + "' (expected o, v, down or up)");
}

std::string shape_text(const s2ft_model_shape &s) {
  return "layers " + std::to_string(s.n_layers) + ", d_model " + std::to_string(s.d_model) + ", heads " +
         std::to_string(s.n_heads) + "/" + std::to_string(s.n_kv_heads) + " kv, head_dim " +
         std::to_string(s.head_dim) + ", d_ff " + std::to_string(s.d_ff);
}

}  // namespace

const char *target_name(int32_t target) {
  switch (target) {
    case S2FT_TARGET_O: return "o";
    case S2FT_TARGET_V: return "v";
    case S2FT_TARGET_DOWN: return "down";
    case S2FT_TARGET_UP: return "up";
    default: return "?";
  }
}

std::vector<std::string> selection_value_options() {
  return {"--strategy", "--order",     "--targets",  "--ratio-o",    "--ratio-down", "--ratio-v", "--ratio-up",
          "--count-o",  "--count-down", "--count-v", "--count-up",   "--allocation", "--heads",   "--seed"};
}

const char *selection_options_help() {
  return "Selection options:\n"
         "  --strategy weight|random   score units by their weight norm, or pick at random (default weight)\n"
         "  --order largest|smallest   keep the highest or the lowest scores (default largest)\n"
         "  --targets LIST             comma-separated targets among o, down, v, up (default o,down)\n"
         "  --ratio-T R                fraction (0, 1] of T's units to train (T = o, down, v, up);\n"
         "                             defaults: o 0.05, down 0.02\n"
         "  --count-T N                number of T's units to train (instead of a ratio)\n"
         "  --allocation per-layer|global\n"
         "                             the same budget in every layer, or one budget ranked across\n"
         "                             all layers (default per-layer)\n"
         "  --heads by-group|single    O units are whole KV groups (contiguous after permuting) or\n"
         "                             single query heads (default by-group)\n"
         "  --seed N                   seed for the random strategy and for tie-breaking (default 0)\n";
}

bool has_selection_options(const ParsedArgs &args) {
  for (const std::string &o : selection_value_options())
    if (args.has(o)) return true;
  return false;
}

s2ft_select_options select_options_from_args(const ParsedArgs &args) {
  s2ft_select_options opts;
  check(s2ft_select_options_init(&opts, S2FT_SELECT_OPTIONS_VERSION));
  opts.strategy = S2FT_STRATEGY_WEIGHT;

  const std::string strategy = args.get("--strategy", "weight");
  if (strategy == "weight") opts.strategy = S2FT_STRATEGY_WEIGHT;
  else if (strategy == "random") opts.strategy = S2FT_STRATEGY_RANDOM;
  else die("--strategy must be weight or random, got '" + strategy + "'");

  const std::string order = args.get("--order", "largest");
  if (order == "largest") opts.order = S2FT_ORDER_LARGEST;
  else if (order == "smallest") opts.order = S2FT_ORDER_SMALLEST;
  else die("--order must be largest or smallest, got '" + order + "'");

  const std::string allocation = args.get("--allocation", "per-layer");
  if (allocation == "per-layer") opts.allocation = S2FT_ALLOCATE_PER_LAYER;
  else if (allocation == "global") opts.allocation = S2FT_ALLOCATE_GLOBAL;
  else die("--allocation must be per-layer or global, got '" + allocation + "'");

  const std::string heads = args.get("--heads", "by-group");
  if (heads == "by-group") opts.head_granularity = S2FT_HEADS_BY_GROUP;
  else if (heads == "single") opts.head_granularity = S2FT_HEADS_SINGLE;
  else die("--heads must be by-group or single, got '" + heads + "'");

  if (args.has("--seed")) opts.seed = parse_uint64("--seed", args.get("--seed"));

  if (args.has("--targets")) {
    opts.targets = 0;
    const std::vector<std::string> names = split_list(args.get("--targets"), ',');
    if (names.empty()) die("--targets is empty (expected a list such as o,down)");
    for (const std::string &n : names) {
      const int32_t t = parse_target(n);
      if (opts.targets & S2FT_TARGET_BIT(t)) die("--targets lists '" + n + "' twice");
      opts.targets |= S2FT_TARGET_BIT(t);
    }
  }

  for (int32_t t : kTargets) {
    const std::string ratio_opt = std::string("--ratio-") + target_name(t);
    const std::string count_opt = std::string("--count-") + target_name(t);
    const bool trained = (opts.targets & S2FT_TARGET_BIT(t)) != 0;
    if (args.has(ratio_opt) && args.has(count_opt)) die("give either " + ratio_opt + " or " + count_opt + ", not both");
    if ((args.has(ratio_opt) || args.has(count_opt)) && !trained)
      die(std::string(args.has(ratio_opt) ? ratio_opt : count_opt) + " is given but --targets does not include " +
          target_name(t));
    if (args.has(ratio_opt)) {
      const double r = parse_double(ratio_opt, args.get(ratio_opt));
      if (!(r > 0.0 && r <= 1.0)) die(ratio_opt + " must be in (0, 1], got " + args.get(ratio_opt));
      opts.ratio[t] = r;
      opts.count[t] = 0;
    } else if (args.has(count_opt)) {
      const int64_t c = parse_int64(count_opt, args.get(count_opt));
      if (c < 1) die(count_opt + " must be at least 1, got " + args.get(count_opt));
      opts.count[t] = c;
      opts.ratio[t] = 0.0;
    } else if (trained && opts.ratio[t] == 0.0 && opts.count[t] == 0) {
      die("--targets includes " + std::string(target_name(t)) + " but neither " + ratio_opt + " nor " + count_opt +
          " is given");
    }
  }
  return opts;
}

SelectionPtr select_for_checkpoint(s2ft_context *ctx, Checkpoint &ckpt, const s2ft_select_options &opts) {
  const s2ft_model_shape &shape = ckpt.shape();
  StatisticsPtr stats;
  if (opts.strategy == S2FT_STRATEGY_WEIGHT) {
    s2ft_statistics *s = nullptr;
    check(s2ft_statistics_create(ctx, &shape, &s));
    stats.reset(s);
    Progress progress("scoring layer", shape.n_layers);
    for (int32_t l = 0; l < shape.n_layers; ++l) {
      progress.step(l + 1);
      for (int32_t t : kTargets)
        if (opts.targets & S2FT_TARGET_BIT(t))
          check(s2ft_statistics_add_weight(stats.get(), l, t, ckpt.weight(l, target_projection(t))));
    }
  }
  s2ft_selection *sel = nullptr;
  check(s2ft_select(ctx, &shape, &opts, stats.get(), &sel));
  return SelectionPtr(sel);
}

void require_selection_fits(const s2ft_selection *sel, const s2ft_model_shape &shape, const std::string &what) {
  s2ft_model_shape s{};
  check(s2ft_selection_shape(sel, &s));
  if (std::memcmp(&s, &shape, sizeof s) != 0)
    die("the selection " + what + " was made for another model shape (" + shape_text(s) + ") than the checkpoint (" +
        shape_text(shape) + ")");
}

}  // namespace cli
}  // namespace s2ft
