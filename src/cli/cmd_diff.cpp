// s2ft diff BASE TUNED --selection SEL.json -o ADAPTER.safetensors: extracts
// what fine-tuning changed in the selected lines as an adapter (with
// --sparse instead of a selection: every projection element that changed,
// as sparse entries, for unstructured methods such as LIFT and SpIEL), then merges
// the written adapter into BASE exactly as `s2ft merge` would (at its
// default scale) and reports how close that comes to TUNED. The adapter
// records its provenance (docs/adapter-format.md): the base model, its
// dtype, how the selection was made, the tool and the time.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>

#include "args.hpp"
#include "checkpoint.hpp"
#include "commands.hpp"
#include "elements.hpp"
#include "io/input_file.hpp"
#include "output.hpp"
#include "printable.hpp"
#include "progress.hpp"
#include "provenance.hpp"
#include "selection_options.hpp"

namespace s2ft {
namespace cli {

const char *const kDiffHelp =
    "usage: s2ft diff BASE_CKPT TUNED_CKPT (--selection SEL.json | --sparse) -o ADAPTER.safetensors\n"
    "                 [--name NAME] [--scale S] [--base-revision REV] [--meta KEY=VALUE]...\n"
    "\n"
    "Builds an adapter from a fine-tuning run: for every line the selection trains, the\n"
    "difference (TUNED - BASE) / S, stored in f32, with default scale S, so that merging it at\n"
    "its default scale gives TUNED back. Both checkpoints must be in base (unpermuted) order:\n"
    "un-permute a permuted one first with `s2ft permute --inverse`.\n"
    "\n"
    "With --sparse instead of --selection (for unstructured sparse fine-tuning: LIFT, SpIEL),\n"
    "every element of the seven projections (q, k, v, o, gate, up, down) that differs between\n"
    "BASE and TUNED becomes a sparse entry of the adapter, (TUNED - BASE) / S in f32, with the\n"
    "base weight's fingerprint; the selected elements below are then those entries.\n"
    "\n"
    "It then merges the written adapter into a copy of BASE as `s2ft merge` does and reports\n"
    "how many elements of the selected lines do not come out bit for bit as in TUNED, and how\n"
    "many of those are more than one unit in the last place (ulp) off. For F32 weights an\n"
    "element is bit-exact where (TUNED - BASE) / S is an f32 number or |TUNED - BASE| <=\n"
    "|TUNED| / 2, at most one ulp off where |TUNED - BASE| <= |TUNED|; F16 and BF16 weights\n"
    "are bit-exact where |TUNED - BASE| <= 4096 |TUNED| (docs/cli.md). It warns about such\n"
    "elements, and about weights outside the selection that differ between BASE and TUNED\n"
    "(those changes are not in the adapter).\n"
    "\n"
    "The adapter records its provenance as metadata (s2ft inspect shows it): base_model\n"
    "(config.json's _name_or_path, else BASE_CKPT's folder name), base_dtype, the selection's\n"
    "strategy, order, allocation, head granularity, seed and budget, library_version and\n"
    "created (UTC; from SOURCE_DATE_EPOCH when set, for reproducible output).\n"
    "\n"
    "  --selection PATH           the selection that was trained\n"
    "  --sparse                   no selection: every changed projection element, as sparse entries\n"
    "  -o, --output PATH          the adapter file to write\n"
    "  --name NAME                the adapter's name (default: TUNED_CKPT's folder name)\n"
    "  --scale S                  the adapter's default scale (default 1, nonzero): the stored\n"
    "                             delta is (TUNED - BASE) / S, so merging at scale S gives TUNED\n"
    "                             and at scale 1 applies 1/S of the fine-tuning\n"
    "  --base-revision REV        record the base model's revision (a commit or tag)\n"
    "  --meta KEY=VALUE           record a metadata key of your own (repeatable; KEY is\n"
    "                             A-Z a-z 0-9 . _ -, up to 255 bytes; it overrides a\n"
    "                             recorded key of the same name)\n";

namespace {

const int32_t kTargets[S2FT_NUM_TARGETS] = {S2FT_TARGET_O, S2FT_TARGET_V, S2FT_TARGET_DOWN, S2FT_TARGET_UP};

struct DiffArgs {
  std::string base_dir, tuned_dir, sel_path, out, name;
  bool sparse = false;  // --sparse: every changed element (no selection)
  double scale = 1.0;
  std::string scale_text = "1";  // as given, for the report
  bool has_revision = false;
  std::string revision;          // --base-revision
  MetaPairs meta;                // --meta, in order
  std::string created;           // the time the adapter is made (ISO-8601, UTC)
};

// The last component of a folder path ("runs/tuned/" -> "tuned"), at most
// 255 bytes (the adapter name limit).
std::string folder_name(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  std::string name = dir.substr(dir.rfind('/') == std::string::npos ? 0 : dir.rfind('/') + 1);
  if (name.size() > 255) name.resize(255);
  return name;
}

DiffArgs parse_diff_args(const Words &words) {
  const ParsedArgs args =
      parse_args(words, {"--output", "--selection", "--name", "--scale", "--base-revision"}, {"--sparse"}, {"--meta"});
  if (args.positional.size() != 2) die("expected BASE_CKPT and TUNED_CKPT (see --help)");
  if (args.has("--selection") && args.has("--sparse")) die("--selection and --sparse exclude each other");
  if (!args.has("--selection") && !args.has("--sparse")) die("--selection SEL.json (or --sparse) is required");
  if (!args.has("--output")) die("-o ADAPTER.safetensors is required");
  DiffArgs a;
  a.base_dir = args.positional[0];
  a.tuned_dir = args.positional[1];
  a.sparse = args.has("--sparse");
  if (!a.sparse) a.sel_path = args.get("--selection");
  a.out = args.get("--output");
  a.name = args.has("--name") ? args.get("--name") : folder_name(a.tuned_dir);
  if (args.has("--scale")) {
    a.scale_text = args.get("--scale");
    a.scale = parse_double("--scale", a.scale_text);
  }
  if (a.scale == 0.0) die("--scale must be nonzero (the adapter stores (TUNED - BASE) / S)");
  if (args.has("--base-revision")) {
    a.has_revision = true;
    a.revision = args.get("--base-revision");
    const std::string why = meta_problem("base_model_revision", a.revision);
    if (!why.empty()) die("--base-revision: " + why);
  }
  if (args.has("--meta")) a.meta = parse_meta_options("--meta", args.lists.at("--meta"));
  a.created = created_time();
  return a;
}

// The adapter and the selection index lines in base order; a permuted
// folder's weights are in another order, so every line would be compared
// with the wrong one.
void require_base_order(const std::string &dir) {
  if (is_permuted_dir(dir))
    die(dir + " is permuted (it has " + kSelectionFile + "); diff compares checkpoints in base order: " +
        "un-permute it first with s2ft permute --inverse " + dir + " -o DIR");
}

void require_same_layout(const Checkpoint &base, const Checkpoint &tuned) {
  if (std::memcmp(&base.shape(), &tuned.shape(), sizeof(s2ft_model_shape)) != 0)
    die(tuned.dir() + " has another model shape than " + base.dir());
  for (const TensorEntry &t : base.tensors()) {
    const TensorEntry *u = tuned.find(t.name);
    if (u == nullptr) die(tuned.dir() + " has no tensor " + t.name + " (it is in " + base.dir() + ")");
    if (u->dtype != t.dtype || u->shape != t.shape)
      die("tensor " + t.name + " has another dtype or shape in " + tuned.dir() + " than in " + base.dir());
  }
  for (const TensorEntry &u : tuned.tensors())
    if (base.find(u.name) == nullptr) die(base.dir() + " has no tensor " + u.name + " (it is in " + tuned.dir() + ")");
}

// The base-order lines the selection trains in (layer, target), ascending.
std::vector<int64_t> selected_lines(const s2ft_selection *sel, int32_t layer, int32_t target) {
  int64_t n = 0;
  check(s2ft_selection_indices(sel, layer, target, S2FT_INDEX_LINES | S2FT_INDEX_BASE, nullptr, 0, &n));
  std::vector<int64_t> lines(static_cast<size_t>(n));
  check(s2ft_selection_indices(sel, layer, target, S2FT_INDEX_LINES | S2FT_INDEX_BASE, lines.data(), n, &n));
  return lines;
}

// Element (r, c) of a compact row-major [rows, cols] weight, as a double.
double element_at(const s2ft_tensor &w, int64_t r, int64_t c) {
  const int32_t dtype = tensor_dtype(w);
  const size_t off = static_cast<size_t>(r * w.shape[1] + c) * element_size(dtype);
  return element_value(static_cast<const uint8_t *>(w.data) + off, dtype);
}

[[noreturn]] void unrepresentable_delta(double d, int32_t layer, int32_t target, int64_t r, int64_t c) {
  std::ostringstream value;
  value << d;
  die("(TUNED - BASE) / scale at (" + std::to_string(r) + ", " + std::to_string(c) + ") of " +
      projection_name(layer, target_projection(target)) + " is " + value.str() + ", which an f32 delta cannot hold");
}

// The delta of (layer, target) over `lines`: (TUNED - BASE) / scale in
// double, rounded once to f32, laid out [out, k] for columns, [k, in] for rows.
std::vector<float> scaled_delta(const s2ft_tensor &base, const s2ft_tensor &tuned, int32_t layer, int32_t target,
                                const std::vector<int64_t> &lines, double scale) {
  const bool columns = trains_columns(target);
  const int64_t k = static_cast<int64_t>(lines.size()), len = columns ? base.shape[0] : base.shape[1];
  std::vector<float> delta(static_cast<size_t>(k * len));
  for (int64_t i = 0; i < k; ++i)
    for (int64_t x = 0; x < len; ++x) {
      const int64_t r = columns ? x : lines[static_cast<size_t>(i)], c = columns ? lines[static_cast<size_t>(i)] : x;
      const double d = (element_at(tuned, r, c) - element_at(base, r, c)) / scale;
      // Checked before the conversion: a double beyond f32's range has no f32 value.
      if (!(std::fabs(d) <= std::numeric_limits<float>::max())) unrepresentable_delta(d, layer, target, r, c);
      delta[static_cast<size_t>(columns ? x * k + i : i * len + x)] = static_cast<float>(d);
    }
  return delta;
}

// The adapter holding (TUNED - BASE) / scale on the selected lines, with
// default scale `scale` and fingerprints of BASE's lines.
AdapterPtr adapter_from_difference(Checkpoint &base, Checkpoint &tuned, const s2ft_selection *sel,
                                   const DiffArgs &a) {
  const s2ft_model_shape &shape = base.shape();
  s2ft_adapter *made = nullptr;
  check(s2ft_adapter_create(&shape, a.name.c_str(), a.scale, &made));
  AdapterPtr adapter(made);
  Progress progress("extracting layer", shape.n_layers);
  for (int32_t l = 0; l < shape.n_layers; ++l) {
    progress.step(l + 1);
    for (int32_t t : kTargets) {
      const std::vector<int64_t> lines = selected_lines(sel, l, t);
      if (lines.empty()) continue;
      const int p = target_projection(t);
      std::vector<float> delta = scaled_delta(*base.weight(l, p), *tuned.weight(l, p), l, t, lines, a.scale);
      const int64_t k = static_cast<int64_t>(lines.size()), len = static_cast<int64_t>(delta.size()) / k;
      const int64_t dims[2] = {trains_columns(t) ? len : k, trains_columns(t) ? k : len};
      s2ft_tensor dt;
      check(s2ft_tensor_init(&dt, delta.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 2, dims));
      check(s2ft_adapter_set(adapter.get(), l, t, lines.data(), k, &dt, base.weight(l, p)));
    }
  }
  return adapter;
}

// The weight id (S2FT_WEIGHT_*) of checkpoint projection p.
int32_t projection_weight(int p) {
  static const int32_t ids[kNumProjections] = {S2FT_WEIGHT_Q,    S2FT_WEIGHT_K,  S2FT_WEIGHT_V,   S2FT_WEIGHT_O,
                                               S2FT_WEIGHT_GATE, S2FT_WEIGHT_UP, S2FT_WEIGHT_DOWN};
  return ids[p];
}

// The adapter holding (TUNED - BASE) / scale at every projection element
// whose bytes differ, as sparse entries, with default scale `scale` and the
// fingerprints of BASE's weights.
AdapterPtr sparse_adapter_from_difference(Checkpoint &base, Checkpoint &tuned, const DiffArgs &a) {
  const s2ft_model_shape &shape = base.shape();
  s2ft_adapter *made = nullptr;
  check(s2ft_adapter_create(&shape, a.name.c_str(), a.scale, &made));
  AdapterPtr adapter(made);
  Progress progress("extracting layer", shape.n_layers);
  for (int32_t l = 0; l < shape.n_layers; ++l) {
    progress.step(l + 1);
    for (int p = 0; p < kNumProjections; ++p) {
      const s2ft_tensor &b = *base.weight(l, p), &t = *tuned.weight(l, p);
      const size_t elem = element_size(tensor_dtype(b));
      const auto *bb = static_cast<const uint8_t *>(b.data), *tb = static_cast<const uint8_t *>(t.data);
      std::vector<int64_t> indices;
      std::vector<float> delta;
      for (int64_t n = 0; n < b.shape[0] * b.shape[1]; ++n) {
        const size_t off = static_cast<size_t>(n) * elem;
        if (std::memcmp(bb + off, tb + off, elem) == 0) continue;
        const int64_t r = n / b.shape[1], c = n % b.shape[1];
        const double d = (element_at(t, r, c) - element_at(b, r, c)) / a.scale;
        if (!(std::fabs(d) <= std::numeric_limits<float>::max())) {
          std::ostringstream value;
          value << d;
          die("(TUNED - BASE) / scale at (" + std::to_string(r) + ", " + std::to_string(c) + ") of " +
              projection_name(l, p) + " is " + value.str() + ", which an f32 delta cannot hold");
        }
        indices.push_back(n);
        delta.push_back(static_cast<float>(d));
      }
      if (indices.empty()) continue;
      const int64_t dims[1] = {static_cast<int64_t>(indices.size())};
      s2ft_tensor dt;
      check(s2ft_tensor_init(&dt, delta.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, dims));
      check(s2ft_adapter_set_sparse(adapter.get(), l, projection_weight(p), indices.data(), dims[0], &dt, &b));
    }
  }
  return adapter;
}

// ---- provenance ------------------------------------------------------------------

// config.json's "_name_or_path" (what Hugging Face records as the model's
// name), else the base folder's own name.
std::string base_model_name(const Checkpoint &base) {
  const auto it = base.config().find("_name_or_path");
  if (it != base.config().end() && it->is_string() && !it->get<std::string>().empty()) return it->get<std::string>();
  std::error_code ec;
  const std::string name = std::filesystem::weakly_canonical(base.dir(), ec).filename().string();
  return ec || name.empty() ? folder_name(base.dir()) : name;
}

// The dtype of the base's projection weights in PyTorch's words
// ("bfloat16"), which the adapter's fingerprints were taken from; when
// they differ, config.json's torch_dtype; else "" (not recorded).
std::string base_dtype(Checkpoint &base) {
  std::set<int32_t> dtypes;
  for (int32_t l = 0; l < base.shape().n_layers; ++l)
    for (int p = 0; p < kNumProjections; ++p) dtypes.insert(tensor_dtype(*base.weight(l, p)));
  if (dtypes.size() == 1) {
    switch (*dtypes.begin()) {
      case S2FT_F32: return "float32";
      case S2FT_F16: return "float16";
      case S2FT_BF16: return "bfloat16";
      default: break;
    }
  }
  return base.torch_dtype();
}

// How the selection was made, from its file's "options" (docs/selection-
// format.md; absent for selections not made by s2ft_select): each member
// there is, as "selection_<member>" (strings as they are, the seed in
// decimal, the budget as compact JSON).
MetaPairs selection_provenance(const std::string &path) {
  MetaPairs out;
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(io::read_file(path, size_t(256) << 20));
  } catch (const std::exception &) {
    return out;  // load_selection has read it; a file changed since records nothing
  }
  const auto options = j.is_object() ? j.find("options") : j.end();
  if (options == j.end() || !options->is_object()) return out;
  for (const char *member : {"strategy", "principal_rank", "order", "allocation", "head_granularity", "seed", "budget"}) {
    const auto m = options->find(member);
    if (m == options->end()) continue;
    out.emplace_back(std::string("selection_") + member, m->is_string() ? m->get<std::string>() : m->dump());
  }
  return out;
}

// Records the adapter's provenance; the user's --meta pairs come last, so
// they override a recorded key of the same name.
void record_provenance(s2ft_adapter *adapter, Checkpoint &base, const DiffArgs &a) {
  set_derived_meta(adapter, "diff", "base_model", base_model_name(base));
  if (a.has_revision) set_meta(adapter, "base_model_revision", a.revision);
  const std::string dtype = base_dtype(base);
  if (!dtype.empty()) set_derived_meta(adapter, "diff", "base_dtype", dtype);
  if (a.sparse)
    set_derived_meta(adapter, "diff", "selection_strategy", "sparse");  // every changed element, no selection
  else
    for (const auto &kv : selection_provenance(a.sel_path)) set_derived_meta(adapter, "diff", kv.first, kv.second);
  record_tool_provenance(adapter, a.created);
  for (const auto &kv : a.meta) set_meta(adapter, kv.first, kv.second);
}

// A fresh copy of BASE with the adapter merged in at its default scale:
// what `s2ft merge BASE ADAPTER` writes (the file keeps the f32 deltas and
// the default scale exactly, so the adapter in memory stands for it).
std::unique_ptr<Checkpoint> merged_copy(const std::string &base_dir, const s2ft_adapter *adapter) {
  double scale = 1.0;
  check(s2ft_adapter_info(adapter, nullptr, &scale, nullptr));
  std::unique_ptr<Checkpoint> merged = Checkpoint::load(base_dir);
  const s2ft_model_shape shape = merged->shape();
  std::vector<s2ft_layer_weights> layers;
  for (int32_t l = 0; l < shape.n_layers; ++l) layers.push_back(merged->layer(l));
  ContextPtr ctx = make_cpu_context();
  s2ft_model *model = nullptr;
  check(s2ft_model_create(ctx.get(), &shape, layers.data(), nullptr, &model));
  ModelPtr model_guard(model);
  check(s2ft_adapter_apply(model, adapter, scale, 0u));
  return merged;  // the merged lines stay in the weights when the model goes
}

struct Comparison {
  int64_t selected_elements = 0;
  int64_t not_exact = 0;       // selected, merged != tuned bit for bit
  int64_t beyond_one_ulp = 0;  // of those, more than one unit in the last place apart
  int64_t outside_changed = 0; // outside the selection: base != tuned
  int64_t outside_weights = 0; // projections with such a change
  std::vector<std::string> other_tensors;  // non-projection tensors that differ
};

// Marks the lines the selection trains, per projection of one layer: column
// masks for o_proj and down_proj, row masks for v_proj and up_proj.
struct LineMasks {
  std::vector<char> columns[kNumProjections], rows[kNumProjections];
  bool selected(int p, int64_t r, int64_t c) const {
    return (!rows[p].empty() && rows[p][static_cast<size_t>(r)]) ||
           (!columns[p].empty() && columns[p][static_cast<size_t>(c)]);
  }
};

LineMasks line_masks(const s2ft_selection *sel, Checkpoint &ckpt, int32_t layer) {
  LineMasks m;
  for (int32_t t : kTargets) {
    const int p = target_projection(t);
    const s2ft_tensor *w = ckpt.weight(layer, p);
    std::vector<char> &mask = trains_columns(t) ? m.columns[p] : m.rows[p];
    mask.assign(static_cast<size_t>(trains_columns(t) ? w->shape[1] : w->shape[0]), 0);
    for (int64_t line : selected_lines(sel, layer, t)) mask[static_cast<size_t>(line)] = 1;
  }
  return m;
}

// Compares one projection element by element: inside the selection merged
// against tuned, outside it base against tuned. Without masks (--sparse)
// every element that changed is in the adapter and is compared merged
// against tuned, and every other one must have stayed in the merge.
void compare_weight(const s2ft_tensor &b, const s2ft_tensor &t, const s2ft_tensor &m, const LineMasks *masks, int p,
                    Comparison *cmp) {
  const int32_t dtype = tensor_dtype(b);
  const size_t elem = element_size(dtype);
  const auto *bb = static_cast<const uint8_t *>(b.data), *tb = static_cast<const uint8_t *>(t.data),
             *mb = static_cast<const uint8_t *>(m.data);
  bool changed_outside = false;
  for (int64_t i = 0; i < b.shape[0]; ++i)
    for (int64_t j = 0; j < b.shape[1]; ++j) {
      const size_t off = static_cast<size_t>(i * b.shape[1] + j) * elem;
      const bool in_adapter = masks ? masks->selected(p, i, j)
                                    : std::memcmp(bb + off, tb + off, elem) != 0 ||  // an entry
                                          std::memcmp(mb + off, tb + off, elem) != 0;  // a merge that went astray
      if (in_adapter) {
        ++cmp->selected_elements;
        if (std::memcmp(mb + off, tb + off, elem) == 0) continue;
        ++cmp->not_exact;
        if (ulp_distance(mb + off, tb + off, dtype) > 1) ++cmp->beyond_one_ulp;
      } else if (std::memcmp(bb + off, tb + off, elem) != 0) {
        ++cmp->outside_changed;
        changed_outside = true;
      }
    }
  if (changed_outside) ++cmp->outside_weights;
}

bool is_projection(const std::string &name, int32_t n_layers) {
  for (int32_t l = 0; l < n_layers; ++l)
    for (int p = 0; p < kNumProjections; ++p)
      if (name == projection_name(l, p)) return true;
  return false;
}

Comparison compare(Checkpoint &base, Checkpoint &tuned, Checkpoint &merged, const s2ft_selection *sel) {
  Comparison cmp;
  const int32_t n_layers = base.shape().n_layers;
  Progress progress("comparing layer", n_layers);
  for (int32_t l = 0; l < n_layers; ++l) {
    progress.step(l + 1);
    const LineMasks masks = sel ? line_masks(sel, base, l) : LineMasks{};
    for (int p = 0; p < kNumProjections; ++p)
      compare_weight(*base.weight(l, p), *tuned.weight(l, p), *merged.weight(l, p), sel ? &masks : nullptr, p, &cmp);
  }
  // Embeddings, norms, lm_head: never in an adapter.
  for (const TensorEntry &info : base.tensors())
    if (!is_projection(info.name, n_layers) &&
        std::memcmp(base.bytes(info.name), tuned.bytes(info.name), static_cast<size_t>(info.nbytes)) != 0)
      cmp.other_tensors.push_back(info.name);
  return cmp;
}

void report(const DiffArgs &a, const Comparison &cmp) {
  say("wrote adapter " + a.out + " (\"" + a.name + "\", default scale " + a.scale_text + ")");
  say(std::string(a.sparse ? "sparse entries: " : "selected elements: ") + std::to_string(cmp.selected_elements));
  say("not reproduced exactly: " + std::to_string(cmp.not_exact));
  say("more than one unit in the last place off: " + std::to_string(cmp.beyond_one_ulp));
  say("changed outside the selection: " + std::to_string(cmp.outside_changed) + " elements in " +
      std::to_string(cmp.outside_weights) + " weights, " + std::to_string(cmp.other_tensors.size()) + " other tensors");
  const int64_t within_one = cmp.not_exact - cmp.beyond_one_ulp;
  if (within_one != 0)
    warn("diff", std::to_string(within_one) + " selected elements merge one unit in the last place away from " +
                     a.tuned_dir + ": there (TUNED - BASE) / scale is not an f32 number and the weight changed by " +
                     "more than half its new magnitude, so the rounding of the adapter's f32 delta shows "
                     "(see docs/cli.md)");
  if (cmp.beyond_one_ulp != 0)
    warn("diff", std::to_string(cmp.beyond_one_ulp) + " selected elements merge more than one unit in the last place "
                     "away from " + a.tuned_dir + ": their weight changed by more than its new magnitude "
                     "(|TUNED - BASE| > |TUNED|), so the rounding of the adapter's f32 delta is larger than that "
                     "unit there (see docs/cli.md)");
  if (cmp.outside_changed != 0)
    warn("diff", std::to_string(cmp.outside_changed) + " weight elements outside the selection differ between " +
                     a.base_dir + " and " + a.tuned_dir + "; those changes are not in the adapter");
  for (const std::string &n : cmp.other_tensors)
    warn("diff", "tensor " + n + " differs between " + a.base_dir + " and " + a.tuned_dir + "; it is not in the adapter");
}

}  // namespace

int run_diff(const Words &words) {
  const DiffArgs a = parse_diff_args(words);
  std::vector<std::string> inputs = {a.base_dir, a.tuned_dir};
  if (!a.sparse) inputs.push_back(a.sel_path);
  check_output_file(a.out, inputs);
  require_base_order(a.base_dir);
  require_base_order(a.tuned_dir);

  std::unique_ptr<Checkpoint> base = Checkpoint::load(a.base_dir);
  std::unique_ptr<Checkpoint> tuned = Checkpoint::load(a.tuned_dir);
  require_same_layout(*base, *tuned);
  SelectionPtr sel;
  if (!a.sparse) {
    sel = load_selection(a.sel_path);
    require_selection_fits(sel.get(), base->shape(), a.sel_path);
  }

  AdapterPtr adapter =
      a.sparse ? sparse_adapter_from_difference(*base, *tuned, a) : adapter_from_difference(*base, *tuned, sel.get(), a);
  record_provenance(adapter.get(), *base, a);
  std::unique_ptr<Checkpoint> merged = merged_copy(a.base_dir, adapter.get());
  const Comparison cmp = compare(*base, *tuned, *merged, sel.get());
  // Written last, so a failure above leaves no adapter behind.
  check(s2ft_adapter_save(adapter.get(), a.out.c_str()));
  report(a, cmp);
  return 0;
}

}  // namespace cli
}  // namespace s2ft
