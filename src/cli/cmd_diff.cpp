// s2ft diff BASE TUNED --selection SEL.json -o ADAPTER.safetensors: extracts
// what fine-tuning changed in the selected lines as an adapter, then checks
// that merging it into BASE gives TUNED's weights back bit for bit.
#include <cstring>
#include <iostream>

#include "adapter_args.hpp"
#include "args.hpp"
#include "checkpoint.hpp"
#include "commands.hpp"
#include "output.hpp"
#include "selection_options.hpp"

namespace s2ft {
namespace cli {

const char *const kDiffHelp =
    "usage: s2ft diff BASE_CKPT TUNED_CKPT --selection SEL.json -o ADAPTER.safetensors\n"
    "                 [--name NAME] [--scale S]\n"
    "\n"
    "Builds an adapter from a fine-tuning run: for every line the selection trains, the\n"
    "difference TUNED - BASE (both checkpoints in base, unpermuted order). It then merges the\n"
    "adapter into a copy of BASE and reports how many elements of the selected lines are not\n"
    "reproduced exactly (expected 0), and warns when weights outside the selection differ\n"
    "between BASE and TUNED (those changes are not in the adapter).\n"
    "\n"
    "  --selection PATH           the selection that was trained\n"
    "  -o, --output PATH          the adapter file to write\n"
    "  --name NAME                the adapter's name (default: TUNED_CKPT's folder name)\n"
    "  --scale S                  the adapter's default scale (default 1)\n";

namespace {

const int32_t kTargets[S2FT_NUM_TARGETS] = {S2FT_TARGET_O, S2FT_TARGET_V, S2FT_TARGET_DOWN, S2FT_TARGET_UP};

void require_same_layout(const Checkpoint &base, const Checkpoint &tuned) {
  const auto a = base.tensors(), b = tuned.tensors();
  if (std::memcmp(&base.shape(), &tuned.shape(), sizeof(s2ft_model_shape)) != 0)
    die(tuned.dir() + " has another model shape than " + base.dir());
  for (const io::TensorInfo *t : a) {
    const io::TensorInfo *u = tuned.find(t->name);
    if (u == nullptr) die(tuned.dir() + " has no tensor " + t->name + " (it is in " + base.dir() + ")");
    if (u->dtype != t->dtype || u->shape != t->shape)
      die("tensor " + t->name + " has another dtype or shape in " + tuned.dir() + " than in " + base.dir());
  }
  for (const io::TensorInfo *u : b)
    if (base.find(u->name) == nullptr) die(base.dir() + " has no tensor " + u->name + " (it is in " + tuned.dir() + ")");
}

// Marks which lines of a projection the selection trains (columns for O and
// DOWN, rows for V and UP); the other projections train none.
std::vector<char> trained_lines(const s2ft_selection *sel, int32_t layer, int32_t target, int64_t n_lines) {
  std::vector<char> mask(static_cast<size_t>(n_lines), 0);
  int64_t n = 0;
  check(s2ft_selection_indices(sel, layer, target, S2FT_INDEX_LINES | S2FT_INDEX_BASE, nullptr, 0, &n));
  std::vector<int64_t> lines(static_cast<size_t>(n));
  check(s2ft_selection_indices(sel, layer, target, S2FT_INDEX_LINES | S2FT_INDEX_BASE, lines.data(), n, &n));
  for (int64_t line : lines) mask[static_cast<size_t>(line)] = 1;
  return mask;
}

struct Comparison {
  int64_t selected_elements = 0, not_reproduced = 0;  // inside the trained lines: merged vs tuned
  int64_t outside_changed = 0;                        // outside them: base vs tuned
  int64_t outside_tensors = 0;                        // tensors with such a change
};

}  // namespace

int run_diff(const Words &words) {
  const ParsedArgs args = parse_args(words, {"--output", "--selection", "--name", "--scale"}, {});
  if (args.positional.size() != 2) die("expected BASE_CKPT and TUNED_CKPT (see --help)");
  if (!args.has("--selection")) die("--selection SEL.json is required");
  if (!args.has("--output")) die("-o ADAPTER.safetensors is required");
  const std::string base_dir = args.positional[0], tuned_dir = args.positional[1];
  const std::string sel_path = args.get("--selection"), out = args.get("--output");
  const double scale = args.has("--scale") ? parse_double("--scale", args.get("--scale")) : 1.0;
  std::string name = args.get("--name");
  if (!args.has("--name")) {
    std::string d = tuned_dir;
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    name = d.substr(d.rfind('/') == std::string::npos ? 0 : d.rfind('/') + 1);
    if (name.size() > 255) name.resize(255);
  }
  check_output_file(out, {base_dir, tuned_dir, sel_path});

  std::unique_ptr<Checkpoint> base = Checkpoint::load(base_dir);
  std::unique_ptr<Checkpoint> tuned = Checkpoint::load(tuned_dir);
  require_same_layout(*base, *tuned);
  SelectionPtr sel = load_selection(sel_path);
  require_selection_fits(sel.get(), base->shape(), sel_path);

  const s2ft_model_shape shape = base->shape();
  ContextPtr ctx = make_cpu_context();
  std::vector<s2ft_layer_weights> base_layers, tuned_layers;
  for (int32_t l = 0; l < shape.n_layers; ++l) {
    base_layers.push_back(base->layer(l));
    tuned_layers.push_back(tuned->layer(l));
  }
  s2ft_adapter *made = nullptr;
  check(s2ft_adapter_from_training(ctx.get(), sel.get(), base_layers.data(), tuned_layers.data(), 0, name.c_str(),
                                   &made));
  AdapterPtr adapter(made);
  set_adapter_default_scale(adapter.get(), scale);
  check(s2ft_adapter_save(adapter.get(), out.c_str()));

  // Merge the adapter (at scale 1: the full difference) into another copy of
  // the base, then compare element by element, bit for bit.
  std::unique_ptr<Checkpoint> merged = Checkpoint::load(base_dir);
  {
    std::vector<s2ft_layer_weights> merged_layers;
    for (int32_t l = 0; l < shape.n_layers; ++l) merged_layers.push_back(merged->layer(l));
    s2ft_model *model = nullptr;
    check(s2ft_model_create(ctx.get(), &shape, merged_layers.data(), nullptr, &model));
    ModelPtr model_guard(model);
    check(s2ft_adapter_apply(model, adapter.get(), 1.0, 0u));
  }

  Comparison cmp;
  for (int32_t l = 0; l < shape.n_layers; ++l) {
    // Per projection: which axis its trained lines run along, if any.
    std::vector<char> col_mask[kNumProjections], row_mask[kNumProjections];
    for (int32_t t : kTargets) {
      const int p = target_projection(t);
      const s2ft_tensor *w = base->weight(l, p);
      if (t == S2FT_TARGET_O || t == S2FT_TARGET_DOWN) col_mask[p] = trained_lines(sel.get(), l, t, w->shape[1]);
      else row_mask[p] = trained_lines(sel.get(), l, t, w->shape[0]);
    }
    for (int p = 0; p < kNumProjections; ++p) {
      const s2ft_tensor *b = base->weight(l, p), *t = tuned->weight(l, p), *m = merged->weight(l, p);
      const int64_t rows = b->shape[0], cols = b->shape[1];
      const size_t elem = b->dtype.bits / 8u;
      const auto *bb = static_cast<const uint8_t *>(b->data), *tb = static_cast<const uint8_t *>(t->data),
                 *mb = static_cast<const uint8_t *>(m->data);
      bool tensor_changed_outside = false;
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
          const size_t off = static_cast<size_t>(i * cols + j) * elem;
          const bool selected = (!row_mask[p].empty() && row_mask[p][static_cast<size_t>(i)]) ||
                                (!col_mask[p].empty() && col_mask[p][static_cast<size_t>(j)]);
          if (selected) {
            ++cmp.selected_elements;
            if (std::memcmp(mb + off, tb + off, elem) != 0) ++cmp.not_reproduced;
          } else if (std::memcmp(bb + off, tb + off, elem) != 0) {
            ++cmp.outside_changed;
            tensor_changed_outside = true;
          }
        }
      if (tensor_changed_outside) ++cmp.outside_tensors;
    }
  }
  // Tensors that are not projections (embeddings, norms, lm_head) are never in an adapter.
  std::vector<std::string> other_changed;
  for (const io::TensorInfo *info : base->tensors()) {
    bool is_projection = false;
    for (int32_t l = 0; l < shape.n_layers && !is_projection; ++l)
      for (int p = 0; p < kNumProjections && !is_projection; ++p) is_projection = info->name == projection_name(l, p);
    if (is_projection) continue;
    if (std::memcmp(base->bytes(info->name), tuned->bytes(info->name), static_cast<size_t>(info->end - info->begin)) != 0)
      other_changed.push_back(info->name);
  }

  std::cout << "wrote adapter " << out << " (\"" << name << "\")\n";
  std::cout << "selected elements: " << cmp.selected_elements << "\n";
  std::cout << "not reproduced exactly: " << cmp.not_reproduced << "\n";
  std::cout << "changed outside the selection: " << cmp.outside_changed << " elements in " << cmp.outside_tensors
            << " weights, " << other_changed.size() << " other tensors\n";
  if (cmp.not_reproduced != 0)
    warn("diff", std::to_string(cmp.not_reproduced) +
                     " elements of the selected lines are not reproduced exactly by merging the adapter");
  if (cmp.outside_changed != 0)
    warn("diff", std::to_string(cmp.outside_changed) + " weight elements outside the selection differ between " +
                     base_dir + " and " + tuned_dir + "; those changes are not in the adapter");
  for (const std::string &n : other_changed)
    warn("diff", "tensor " + n + " differs between " + base_dir + " and " + tuned_dir + "; it is not in the adapter");
  return 0;
}

}  // namespace cli
}  // namespace s2ft
