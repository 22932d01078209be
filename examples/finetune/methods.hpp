// The methods the fidelity protocol compares, as data: which one, what it
// trains, and the learning rates to try. make_method() builds one for a run.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "batch.hpp"
#include "fine_tuning.hpp"
#include "llama_config.hpp"
#include "s2ft_method.hpp"
#include "sorsa_method.hpp"
#include "sparse_method.hpp"

namespace ft {

enum class MethodKind { Full, Lora, S2ft, Sparse, Sorsa };

struct MethodSpec {
  std::string name;  // e.g. "full", "lora-qkvud", "s2ft-random-1x"
  MethodKind kind = MethodKind::Full;
  std::vector<Proj> lora_targets;  // LoRA: the adapted projections
  int64_t lora_rank = 0;           // LoRA: alpha = 2 x rank
  S2ftSettings s2ft;               // S2FT: targets, strategy, order, units per layer
  SparseSettings sparse;           // LIFT, SpIEL: kind, targets, entries, schedule
  SorsaSettings sorsa;             // SORSA: rank, regularizer
  std::vector<double> lrs;         // the learning-rate grid
};

// The method of `spec` for one run (S2FT's seed and LoRA's init from `seed`;
// `calibration` feeds S2FT's activation statistics).
std::unique_ptr<FineTuning> make_method(s2ft_context *ctx, const MethodSpec &spec,
                                        const std::vector<Batch> &calibration, uint64_t seed);

// S2FT's trainable parameters for `s` on a model of config `c`.
int64_t s2ft_parameter_count(const LlamaConfig &c, const S2ftSettings &s);
// LoRA's parameters per unit of rank on `targets` of every layer.
int64_t lora_parameters_per_rank(const LlamaConfig &c, const std::vector<Proj> &targets);
// The rank (>= 1) whose LoRA parameter count on `targets` is nearest `params`.
int64_t lora_rank_matching(const LlamaConfig &c, const std::vector<Proj> &targets, int64_t params);
// SORSA's parameters per unit of rank on all seven projections of every
// layer: u [out, r], s [r] and vt [r, in], so out + in + 1 per projection.
int64_t sorsa_parameters_per_rank(const LlamaConfig &c);
// The rank (>= 1) whose SORSA parameter count is nearest `params`, at most
// the smallest min(out, in) of the projections (no larger rank splits them all).
int64_t sorsa_rank_matching(const LlamaConfig &c, int64_t params);

// learning rates center x 2^k for k in [-below, above].
std::vector<double> rate_grid(double center, int below, int above);

struct StandardMethods {
  S2ftSettings s2ft;        // the scored selection and the small budget (units per layer)
  int64_t large_factor = 4;  // the large budget: x this DOWN/UP units, x2 O/V units (at most all)
  // The learning-rate grid of each family, and the rate each method runs by
  // default (the best of its grid; a method not named runs its family's
  // grid middle).
  std::vector<double> full_grid, lora_grid, s2ft_grid;
  std::vector<double> sparse_grid;  // LIFT and SpIEL-AG (AdamW); empty: lora_grid
  std::vector<double> sm3_grid;     // SpIEL-MA (SM3, whose steps are smaller); empty: sparse_grid
  int64_t run_steps = 0;   // the longest run (SpIEL's replacement decays over it)
  std::map<std::string, double> best;
  bool grid = false;       // each method over its family's grid, else its best rate only
  bool two_rates = false;  // best and 2 x best (a short check of the protocol)
  double lr_scale = 1.0;   // every rate times this
};

// The methods of the comparison, in table order: full; LoRA on q,k,v,up,down
// and on o,down, ranks matched to S2FT's small budget; S2FT with random and
// with scored selection at the small and the large budget; LIFT, SpIEL-AG
// and SpIEL-MA on all seven projections with S2FT's small budget of
// entries; SORSA on all seven projections, its rank matched to S2FT's small
// budget (LoRA's grid). Names: full, lora-qkvud, lora-od, s2ft-random-small,
// s2ft-<scored>-small, s2ft-random-large, s2ft-<scored>-large, lift,
// spiel-ag, spiel-ma, sorsa, with <scored> e.g. "act-min" (activation,
// smallest); a random scored strategy is listed once.
std::vector<MethodSpec> standard_methods(const LlamaConfig &c, const StandardMethods &o);

// The methods of `all` named in `names`, in that order (all of them when
// names is empty). Throws std::invalid_argument on an unknown name.
std::vector<MethodSpec> pick_methods(const std::vector<MethodSpec> &all, const std::vector<std::string> &names);

}  // namespace ft
