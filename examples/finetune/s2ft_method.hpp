// S2FT through libs2ft, the way a training framework would embed it:
//   calibrate  - run the model on a few batches and feed the inputs of
//                o_proj and down_proj to s2ft_statistics;
//   select     - s2ft_select picks heads (whole KV groups) and channels;
//   permute    - s2ft_permute co-permutes q, k, v, o, gate, up, down of every
//                layer so the selected units come first (same function);
//   train      - o_proj/down_proj (and optionally v_proj/up_proj) become
//                S2ftProjections on their contiguous slices; everything else
//                is frozen and has no gradient and no optimizer state;
//   export     - the trained slices minus the base slices are an adapter in
//                the base model's order (s2ft_adapter_from_training).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "batch.hpp"
#include "fine_tuning.hpp"

namespace ft {

struct S2ftSettings {
  uint32_t targets = S2FT_TARGET_BIT(S2FT_TARGET_O) | S2FT_TARGET_BIT(S2FT_TARGET_DOWN);
  int32_t strategy = S2FT_STRATEGY_ACTIVATION;  // the paper's best on LLaMA-3
  int32_t order = S2FT_ORDER_SMALLEST;
  // Units per layer and target: KV groups for O, KV heads for V, channels for DOWN and UP.
  int64_t count[S2FT_NUM_TARGETS] = {1, 1, 16, 16};
  uint64_t seed = 0;
};

class S2ftFineTuning : public FineTuning {
 public:
  // `calibration` feeds the activation statistics (unused by the random and
  // weight strategies).
  S2ftFineTuning(s2ft_context *ctx, const OptimizerSettings &opt, const S2ftSettings &settings,
                 std::vector<Batch> calibration);
  const char *name() const override { return "s2ft"; }
  // Calibrates, selects, permutes the model's weights in place and installs
  // the trained slices.
  void attach(LlamaModel<float> &model) override;

  const s2ft_selection *selection() const { return sel_.get(); }
  // Co-permutes `w` (a model of the same shape) FORWARD or INVERSE by the selection.
  void permute(LlamaWeights<float> &w, int32_t direction) const;
  // The adapter of the training run: `base` and `trained` both in permuted order.
  AdapterPtr make_adapter(LlamaWeights<float> &base, LlamaWeights<float> &trained, const std::string &name) const;

 private:
  void calibrate(LlamaModel<float> &model, s2ft_statistics *stats) const;

  S2ftSettings settings_;
  std::vector<Batch> calibration_;
  SelectionPtr sel_;
  LlamaConfig cfg_;
  s2ft_model_shape shape_{};
};

// One layer's projection weights as libs2ft descriptors, indexed by Proj.
struct LayerTensors {
  s2ft_tensor t[kNumProj];
  s2ft_layer_weights view();
};
// The descriptors of every layer of `w`; throws if a weight's size does not
// match `c`.
std::vector<LayerTensors> layer_tensors(const LlamaConfig &c, LlamaWeights<float> &w);

}  // namespace ft
