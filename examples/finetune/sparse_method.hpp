// Unstructured sparse fine-tuning through libs2ft, the way a training
// framework would embed it:
//   LIFT  (Liu et al., ICML 2025) - per weight, the rank-r approximation W_r
//          and the entries of largest |W_r| ("principal weights",
//          s2ft_lift_select), optionally reselected every N steps
//          (s2ft_lift_refresh: kept entries keep their optimizer state);
//   SpIEL (Ansell et al., 2024)   - random entries at first, then every N
//          steps the entries whose deltas stayed smallest are dropped and as
//          many regrown, by accumulated gradients (AG) or by SM3's row x
//          column momentum estimate (MA) (s2ft_spiel_*).
// Every linear projection of `targets` becomes a SparseProjection; the
// entries of the whole model are split over the weights in proportion to
// out + in (LIFT's parameter matching to LoRA), so `budget` matches a
// given parameter count.
#pragma once

#include <cstdint>
#include <vector>

#include "fine_tuning.hpp"
#include "llama_config.hpp"
#include "sparse_projection.hpp"

namespace ft {

enum class SparseKind { Lift, SpielAg, SpielMa };

struct SparseSettings {
  SparseKind kind = SparseKind::Lift;
  std::vector<Proj> targets = {Proj::Q, Proj::K, Proj::V, Proj::O, Proj::GATE, Proj::UP, Proj::DOWN};
  int64_t budget = 0;          // trained entries in the whole model (>= one per weight)
  int32_t lift_rank = 8;       // LIFT: r of W_r (at most min(out, in))
  int64_t refresh_every = 0;   // LIFT: reselect every N steps (0: never)
  int64_t reselect_every = 20; // SpIEL: N, steps between reselections
  int64_t accumulate = 5;      // SpIEL-AG: steps of gradient accumulation before each
  double replacement = 0.2;    // SpIEL: the rate p0 (decays linearly to 0; the first reselection replaces all)
  int64_t total_steps = 0;     // SpIEL: the run's length (the replacement decays to 0 over it)
  uint64_t seed = 0;           // SpIEL: the initial random entries
};

// The entries of each (layer, target) weight for `budget` in total, in
// proportion to out + in, at least 1 and at most out * in each; indexed
// [layer * targets.size() + i].
std::vector<int64_t> sparse_counts(const LlamaConfig &c, const std::vector<Proj> &targets, int64_t budget);

// The method's name in tables: "lift", "spiel-ag", "spiel-ma".
const char *sparse_kind_name(SparseKind k);

class SparseFineTuning : public FineTuning {
 public:
  SparseFineTuning(s2ft_context *ctx, const OptimizerSettings &opt, const SparseSettings &settings);
  ~SparseFineTuning() override;
  const char *name() const override { return sparse_kind_name(settings_.kind); }
  // Selects the entries of every target weight and installs the projections.
  void attach(LlamaModel<float> &model) override;

  struct Stats {
    int64_t refreshes = 0;   // LIFT reselections / SpIEL reselection steps
    int64_t replaced = 0;    // entries that changed over the run
  };
  const Stats &stats() const { return stats_; }
  // Every trained projection, in (layer, target) order.
  const std::vector<SparseProjection *> &projections() const { return projections_; }

 protected:
  void after_step(int64_t steps) override;

 private:
  struct Trained;
  s2ft_spiel *make_spiel(int64_t index, const s2ft_tensor &w) const;
  SparseSettings settings_;
  std::vector<SparseProjection *> projections_;  // owned by the model
  std::vector<Trained> trained_;
  Stats stats_;
};

}  // namespace ft
