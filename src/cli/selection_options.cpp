#include "selection_options.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>

#include "elements.hpp"
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

// The strategies that score from the weights alone. The others need
// statistics gathered over calibration data, which a checkpoint lacks.
int32_t parse_strategy(const std::string &name) {
  if (name == "weight") return S2FT_STRATEGY_WEIGHT;
  if (name == "principal") return S2FT_STRATEGY_PRINCIPAL;
  if (name == "random") return S2FT_STRATEGY_RANDOM;
  if (name == "activation" || name == "weight-activation" || name == "gradient")
    die("--strategy " + name + " scores by statistics over calibration data (" +
        (name == "gradient" ? "weight gradients" : "input activations") +
        " from forward passes on training text), which s2ft cannot compute from a checkpoint alone; compute them "
        "with the library (s2ft_statistics_add_activation or _add_gradient, s2ft_select, s2ft_selection_save) "
        "and give that selection to s2ft permute --selection");
  die("--strategy must be weight, principal or random, got '" + name + "'");
}

// What one unit of a target is, for messages: under GQA an o unit is a
// whole KV group unless --heads single.
std::string unit_explanation(const s2ft_model_shape &s, int32_t target, int32_t granularity) {
  const int32_t r = s.n_heads / s.n_kv_heads;
  switch (target) {
    case S2FT_TARGET_O:
      if (granularity == S2FT_HEADS_SINGLE) return "an o unit is a query head";
      if (r == 1) return "an o unit is a head";
      return "under --heads by-group an o unit is a KV group, the " + std::to_string(r) +
             " query heads that share one KV head; --heads single counts query heads";
    case S2FT_TARGET_V: return "a v unit is a KV head";
    case S2FT_TARGET_UP: return "an up unit is an FFN channel";
    default: return "a down unit is an FFN channel";
  }
}

int64_t units_per_layer(const s2ft_model_shape &s, int32_t target, int32_t granularity) {
  switch (target) {
    case S2FT_TARGET_O: return granularity == S2FT_HEADS_SINGLE ? s.n_heads : s.n_kv_heads;
    case S2FT_TARGET_V: return s.n_kv_heads;
    default: return s.d_ff;
  }
}

// Checks every --count-T against the checkpoint, so the error names the
// option and the unit rather than the library's option struct.
void require_counts_fit(const s2ft_select_options &opts, const s2ft_model_shape &shape) {
  const bool global = opts.allocation == S2FT_ALLOCATE_GLOBAL;
  for (int32_t t : kTargets) {
    if (!(opts.targets & S2FT_TARGET_BIT(t)) || opts.count[t] == 0) continue;
    const int64_t available = units_per_layer(shape, t, opts.head_granularity) * (global ? shape.n_layers : 1);
    if (opts.count[t] > available)
      die("--count-" + std::string(target_name(t)) + " " + std::to_string(opts.count[t]) + " is more than the " +
          std::to_string(available) + " " + target_name(t) + " units " +
          (global ? "in all " + std::to_string(shape.n_layers) + " layers" : "per layer") + " of this checkpoint (" +
          unit_explanation(shape, t, opts.head_granularity) + ")");
  }
}

// The largest rank every targeted weight allows: min(rows, cols) of each.
void require_rank_fits(int32_t rank, uint32_t targets, const s2ft_model_shape &s) {
  for (int32_t t : kTargets) {
    if (!(targets & S2FT_TARGET_BIT(t))) continue;
    const int64_t q = static_cast<int64_t>(s.n_heads) * s.head_dim, kv = static_cast<int64_t>(s.n_kv_heads) * s.head_dim;
    const int64_t rows = t == S2FT_TARGET_O ? s.d_model : t == S2FT_TARGET_V ? kv : t == S2FT_TARGET_DOWN ? s.d_model : s.d_ff;
    const int64_t cols = t == S2FT_TARGET_O ? q : t == S2FT_TARGET_V ? s.d_model : t == S2FT_TARGET_DOWN ? s.d_ff : s.d_model;
    if (rank > std::min(rows, cols))
      die("--principal-rank " + std::to_string(rank) + " is more than min(rows, cols) = " +
          std::to_string(std::min(rows, cols)) + " of the " + target_name(t) + " weights [" + std::to_string(rows) +
          ", " + std::to_string(cols) + "] of this checkpoint");
  }
}

// A weight score is a norm over the unit's weights: one NaN or infinity
// makes the scores, and so the units chosen, meaningless.
void require_finite(const s2ft_tensor &w, const std::string &name) {
  const int32_t dtype = tensor_dtype(w);
  const size_t elem = element_size(dtype), n = static_cast<size_t>(w.shape[0] * w.shape[1]);
  const auto *bytes = static_cast<const uint8_t *>(w.data);
  for (size_t i = 0; i < n; ++i) {
    const double v = element_value(bytes + i * elem, dtype);
    if (!std::isfinite(v))
      die(name + " holds " + (std::isnan(v) ? "NaN" : "an infinity") + " at element " + std::to_string(i) +
          ", so its scores are meaningless; fix the checkpoint, or choose with --strategy random");
  }
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
          "--count-o",  "--count-down", "--count-v", "--count-up",   "--allocation", "--heads",   "--seed",
          "--principal-rank"};
}

bool has_selection_options(const ParsedArgs &args) {
  for (const std::string &o : selection_value_options())
    if (args.has(o)) return true;
  return false;
}

s2ft_select_options select_options_from_args(const ParsedArgs &args) {
  s2ft_select_options opts;
  check(s2ft_select_options_init(&opts, S2FT_SELECT_OPTIONS_VERSION));
  opts.strategy = parse_strategy(args.get("--strategy", "weight"));

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

int32_t principal_rank_from_args(const ParsedArgs &args, const s2ft_select_options &opts) {
  const bool principal = opts.strategy == S2FT_STRATEGY_PRINCIPAL;
  if (!args.has("--principal-rank")) {
    if (principal) die("--strategy principal needs --principal-rank R (the rank of the SVD approximation W_R)");
    return 0;
  }
  if (!principal) die("--principal-rank is given but --strategy is not principal");
  const int64_t r = parse_int64("--principal-rank", args.get("--principal-rank"));
  if (r < 1 || r > INT32_MAX) die("--principal-rank must be at least 1, got " + args.get("--principal-rank"));
  return static_cast<int32_t>(r);
}

SelectionPtr select_for_checkpoint(s2ft_context *ctx, Checkpoint &ckpt, const s2ft_select_options &opts,
                                   int32_t principal_rank) {
  const s2ft_model_shape &shape = ckpt.shape();
  require_counts_fit(opts, shape);
  const bool principal = opts.strategy == S2FT_STRATEGY_PRINCIPAL;
  if (principal) require_rank_fits(principal_rank, opts.targets, shape);
  StatisticsPtr stats;
  if (opts.strategy == S2FT_STRATEGY_WEIGHT || principal) {
    s2ft_statistics *s = nullptr;
    check(s2ft_statistics_create(ctx, &shape, &s));
    stats.reset(s);
    Progress progress("scoring layer", shape.n_layers);
    for (int32_t l = 0; l < shape.n_layers; ++l) {
      progress.step(l + 1);
      for (int32_t t : kTargets) {
        if (!(opts.targets & S2FT_TARGET_BIT(t))) continue;
        const int p = target_projection(t);
        require_finite(*ckpt.weight(l, p), projection_name(l, p));
        if (principal)
          check(s2ft_statistics_add_principal(stats.get(), l, t, ckpt.weight(l, p), principal_rank));
        else
          check(s2ft_statistics_add_weight(stats.get(), l, t, ckpt.weight(l, p)));
      }
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
