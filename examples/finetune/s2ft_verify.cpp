#include "s2ft_verify.hpp"

#include <cmath>
#include <cstring>
#include <vector>

#include "llama_model.hpp"
#include "s2ft_check.hpp"
#include "s2ft_handles.hpp"
#include "s2ft_method.hpp"

namespace ft {

namespace {

// The base-order lines of (layer, target); empty when it is not trained.
std::vector<int64_t> trained_lines(const s2ft_selection *sel, int32_t layer, int32_t target) {
  int64_t count = 0;
  s2ft_check(s2ft_selection_indices(sel, layer, target, S2FT_INDEX_LINES | S2FT_INDEX_BASE, nullptr, 0, &count),
             "s2ft_selection_indices");
  std::vector<int64_t> lines(static_cast<size_t>(count));
  if (count > 0)
    s2ft_check(s2ft_selection_indices(sel, layer, target, S2FT_INDEX_LINES | S2FT_INDEX_BASE, lines.data(), count, &count),
               "s2ft_selection_indices");
  return lines;
}

void compare(const std::vector<float> &base, const std::vector<float> &trained, int64_t cols,
             const std::vector<int64_t> &lines, bool by_column, const std::string &name, FrozenCheck &r) {
  std::vector<char> selected(static_cast<size_t>(by_column ? cols : static_cast<int64_t>(base.size()) / cols), 0);
  for (int64_t l : lines) selected[static_cast<size_t>(l)] = 1;
  for (size_t i = 0; i < base.size(); ++i) {
    const int64_t row = static_cast<int64_t>(i) / cols, col = static_cast<int64_t>(i) % cols;
    const bool in = selected[static_cast<size_t>(by_column ? col : row)] != 0;
    const bool differs = std::memcmp(&base[i], &trained[i], sizeof(float)) != 0;
    r.trained_elements += in;
    if (in) {
      r.changed_trained += differs;
    } else if (differs) {
      if (r.changed_frozen++ == 0)
        r.first_changed = name + "[" + std::to_string(row) + ", " + std::to_string(col) + "]";
    }
  }
}

}  // namespace

FrozenCheck check_frozen(const LlamaConfig &c, const s2ft_selection *sel, const LlamaWeights<float> &base,
                         const LlamaWeights<float> &trained) {
  FrozenCheck r;
  const std::vector<int64_t> none;
  compare(base.embed, trained.embed, c.d_model, none, false, "embed", r);
  compare(base.final_norm, trained.final_norm, c.d_model, none, false, "final_norm", r);
  if (!c.tied) compare(base.lm_head, trained.lm_head, c.d_model, none, false, "lm_head", r);
  for (int32_t l = 0; l < static_cast<int32_t>(c.n_layers); ++l) {
    const LayerWeights<float> &b = base.layers[static_cast<size_t>(l)], &t = trained.layers[static_cast<size_t>(l)];
    const std::string at = "layer " + std::to_string(l) + " ";
    compare(b.attn_norm, t.attn_norm, c.d_model, none, false, at + "attn_norm", r);
    compare(b.ffn_norm, t.ffn_norm, c.d_model, none, false, at + "ffn_norm", r);
    compare(b.q, t.q, c.d_model, none, false, at + "q_proj", r);
    compare(b.k, t.k, c.d_model, none, false, at + "k_proj", r);
    compare(b.gate, t.gate, c.d_model, none, false, at + "gate_proj", r);
    compare(b.o, t.o, c.q_dim(), trained_lines(sel, l, S2FT_TARGET_O), true, at + "o_proj", r);
    compare(b.down, t.down, c.d_ff, trained_lines(sel, l, S2FT_TARGET_DOWN), true, at + "down_proj", r);
    compare(b.v, t.v, c.d_model, trained_lines(sel, l, S2FT_TARGET_V), false, at + "v_proj", r);
    compare(b.up, t.up, c.d_model, trained_lines(sel, l, S2FT_TARGET_UP), false, at + "up_proj", r);
  }
  return r;
}

LlamaWeights<float> merge_adapter(s2ft_context *ctx, const LlamaConfig &c, const LlamaWeights<float> &base,
                                  const s2ft_adapter *adapter) {
  LlamaWeights<float> merged = base;
  std::vector<LayerTensors> lt = layer_tensors(c, merged);
  std::vector<s2ft_layer_weights> views;
  for (auto &l : lt) views.push_back(l.view());
  const s2ft_model_shape shape = c.shape();
  s2ft_model *m = nullptr;
  s2ft_check(s2ft_model_create(ctx, &shape, views.data(), nullptr, &m), "s2ft_model_create");
  ModelPtr model(m);
  s2ft_check(s2ft_adapter_apply(model.get(), adapter, 1.0, 0), "s2ft_adapter_apply");
  return merged;  // destroying the model leaves the adapter merged
}

double max_logit_difference(const LlamaConfig &c, LlamaWeights<float> &a, LlamaWeights<float> &b, const Batch &batch) {
  LlamaModel<float> ma(c, a), mb(c, b);
  ma.forward(batch.tokens.data(), batch.batch, batch.seq, nullptr, false);
  mb.forward(batch.tokens.data(), batch.batch, batch.seq, nullptr, false);
  double worst = 0.0;
  for (size_t i = 0; i < ma.logits().size(); ++i)
    worst = std::max(worst, std::fabs(static_cast<double>(ma.logits()[i]) - mb.logits()[i]));
  return worst;
}

}  // namespace ft
