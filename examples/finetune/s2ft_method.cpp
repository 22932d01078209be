#include "s2ft_method.hpp"

#include <stdexcept>
#include <string>

#include "s2ft_check.hpp"
#include "s2ft_projection.hpp"

namespace ft {

namespace {

// libs2ft's targets, the projection each trains and along which axis.
struct Target {
  int32_t id;
  Proj proj;
  int32_t axis;
};
constexpr Target kTrainable[] = {{S2FT_TARGET_O, Proj::O, S2FT_AXIS_COLUMNS},
                                 {S2FT_TARGET_V, Proj::V, S2FT_AXIS_ROWS},
                                 {S2FT_TARGET_DOWN, Proj::DOWN, S2FT_AXIS_COLUMNS},
                                 {S2FT_TARGET_UP, Proj::UP, S2FT_AXIS_ROWS}};

}  // namespace

s2ft_layer_weights LayerTensors::view() {
  auto at = [&](Proj p) { return &t[static_cast<int>(p)]; };
  return {at(Proj::Q), at(Proj::K), at(Proj::V), at(Proj::O), at(Proj::GATE), at(Proj::UP), at(Proj::DOWN)};
}

std::vector<LayerTensors> layer_tensors(const LlamaConfig &c, LlamaWeights<float> &w) {
  if (static_cast<int64_t>(w.layers.size()) != c.n_layers)
    throw std::invalid_argument("layer_tensors: " + std::to_string(w.layers.size()) + " layers, expected " +
                                std::to_string(c.n_layers));
  // Descriptors are only as safe as the sizes behind them.
  std::vector<LayerTensors> out(w.layers.size());
  for (size_t l = 0; l < w.layers.size(); ++l)
    for (int p = 0; p < kNumProj; ++p) {
      const Proj pp = static_cast<Proj>(p);
      std::vector<float> &v = w.layers[l].weight(pp);
      const int64_t rows = c.out_features(pp), cols = c.in_features(pp);
      if (static_cast<int64_t>(v.size()) != rows * cols)
        throw std::invalid_argument("layer_tensors: layer " + std::to_string(l) + " " + proj_name(pp) + " has " +
                                    std::to_string(v.size()) + " values, expected " + std::to_string(rows * cols));
      out[l].t[p] = f32_tensor(v.data(), rows, cols);
    }
  return out;
}

S2ftFineTuning::S2ftFineTuning(s2ft_context *ctx, const OptimizerSettings &opt, const S2ftSettings &settings,
                               std::vector<Batch> calibration)
    : FineTuning(ctx, opt), settings_(settings), calibration_(std::move(calibration)) {}

void S2ftFineTuning::calibrate(LlamaModel<float> &model, s2ft_statistics *stats) const {
  // Activation scores are per-column sums of squares of the inputs of
  // o_proj and down_proj (V and UP units reuse them).
  model.set_input_tap([&](int64_t layer, Proj p, const float *x, int64_t n) {
    if (p != Proj::O && p != Proj::DOWN) return;
    const s2ft_tensor t = f32_tensor(x, n, model.config().in_features(p));
    s2ft_check(s2ft_statistics_add_activation(stats, static_cast<int32_t>(layer),
                                              p == Proj::O ? S2FT_TARGET_O : S2FT_TARGET_DOWN, &t),
               "s2ft_statistics_add_activation");
  });
  for (const Batch &b : calibration_) model.forward(b.tokens.data(), b.batch, b.seq, nullptr, false);
  model.set_input_tap(nullptr);
}

void S2ftFineTuning::attach(LlamaModel<float> &model) {
  const LlamaConfig &c = model.config();
  cfg_ = c;
  shape_ = c.shape();
  s2ft_statistics *stats_raw = nullptr;
  s2ft_check(s2ft_statistics_create(ctx_, &shape_, &stats_raw), "s2ft_statistics_create");
  StatisticsPtr stats(stats_raw);
  // Weight scores for every target (the weight and weight x activation strategies use them).
  std::vector<LayerTensors> lt = layer_tensors(c, model.weights());
  for (int32_t l = 0; l < shape_.n_layers; ++l)
    for (const Target &t : kTrainable)
      s2ft_check(s2ft_statistics_add_weight(stats.get(), l, t.id, &lt[static_cast<size_t>(l)].t[static_cast<int>(t.proj)]),
                 "s2ft_statistics_add_weight");
  const bool needs_activations =
      settings_.strategy == S2FT_STRATEGY_ACTIVATION || settings_.strategy == S2FT_STRATEGY_WEIGHT_ACT;
  if (needs_activations) {
    if (calibration_.empty()) throw std::invalid_argument("S2FT: the activation strategies need calibration batches");
    calibrate(model, stats.get());
  }

  s2ft_select_options so;
  s2ft_check(s2ft_select_options_init(&so, S2FT_SELECT_OPTIONS_VERSION), "s2ft_select_options_init");
  so.targets = settings_.targets;
  so.strategy = settings_.strategy;
  so.order = settings_.order;
  so.allocation = S2FT_ALLOCATE_PER_LAYER;
  so.head_granularity = S2FT_HEADS_BY_GROUP;  // whole KV groups: contiguous after permuting
  so.seed = settings_.seed;
  for (int t = 0; t < S2FT_NUM_TARGETS; ++t) {
    so.ratio[t] = 0.0;
    so.count[t] = (settings_.targets & S2FT_TARGET_BIT(t)) ? settings_.count[t] : 0;
  }
  s2ft_selection *sel = nullptr;
  s2ft_check(s2ft_select(ctx_, &shape_, &so, stats.get(), &sel), "s2ft_select");
  sel_.reset(sel);

  permute(model.weights(), S2FT_PERMUTE_FORWARD);

  // Install the trained slices: after permuting, each is one contiguous range.
  for (int32_t l = 0; l < shape_.n_layers; ++l)
    for (const Target &t : kTrainable) {
      if (!(settings_.targets & S2FT_TARGET_BIT(t.id))) continue;
      int64_t begin = 0, count = 0;
      s2ft_check(s2ft_selection_range(sel_.get(), l, t.id, &begin, &count), "s2ft_selection_range");
      if (count == 0) continue;
      std::vector<int64_t> lines(static_cast<size_t>(count));
      for (int64_t i = 0; i < count; ++i) lines[static_cast<size_t>(i)] = begin + i;
      const int64_t out = model.config().out_features(t.proj), in = model.config().in_features(t.proj);
      float *w = model.weight(l, t.proj).data();
      auto proj = std::make_unique<S2ftProjection>(ctx_, w, out, in, t.axis, std::move(lines));
      add(w, out, in, &proj->slice(), proj->grad_tensor());
      model.set_projection(l, t.proj, std::move(proj));
    }
}

void S2ftFineTuning::permute(LlamaWeights<float> &w, int32_t direction) const {
  if (!sel_) throw std::logic_error("S2FT: permute before attach");
  std::vector<LayerTensors> lt = layer_tensors(cfg_, w);
  for (int32_t l = 0; l < shape_.n_layers; ++l) {
    const s2ft_layer_weights v = lt[static_cast<size_t>(l)].view();
    s2ft_check(s2ft_permute(ctx_, sel_.get(), l, &v, direction), "s2ft_permute");
  }
}

AdapterPtr S2ftFineTuning::make_adapter(LlamaWeights<float> &base, LlamaWeights<float> &trained,
                                        const std::string &name) const {
  if (!sel_) throw std::logic_error("S2FT: make_adapter before attach");
  std::vector<LayerTensors> bt = layer_tensors(cfg_, base), tt = layer_tensors(cfg_, trained);
  std::vector<s2ft_layer_weights> bv, tv;
  for (size_t l = 0; l < bt.size(); ++l) {
    bv.push_back(bt[l].view());
    tv.push_back(tt[l].view());
  }
  s2ft_adapter *a = nullptr;
  s2ft_check(s2ft_adapter_from_training(ctx_, sel_.get(), bv.data(), tv.data(), 1, name.c_str(), &a),
             "s2ft_adapter_from_training");
  return AdapterPtr(a);
}

}  // namespace ft
