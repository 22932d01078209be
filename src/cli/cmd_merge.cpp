// s2ft merge CKPT ADAPTER[:SCALE]... -o OUTDIR: merges adapters into a
// checkpoint's weights and writes the result as a new checkpoint.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "adapter_args.hpp"
#include "args.hpp"
#include "checkpoint.hpp"
#include "commands.hpp"
#include "output.hpp"
#include "printable.hpp"
#include "progress.hpp"
#include "selection_options.hpp"

namespace s2ft {
namespace cli {

const char *const kMergeHelp =
    "usage: s2ft merge CKPT ADAPTER[:SCALE]... -o OUTDIR [--force] [--selection SEL.json]\n"
    "\n"
    "Merges the adapters into the weights of the checkpoint folder CKPT (W[line] += scale * delta,\n"
    "rounded once to the weight's dtype) and writes the result to the new folder OUTDIR. Several\n"
    "adapters are fused first (s2ft fuse); SCALE defaults to each adapter's default scale.\n"
    "If CKPT is permuted (s2ft permute), its selection is needed to find the lines:\n"
    "--selection, or CKPT/s2ft-selection.json when present; it is saved as\n"
    "OUTDIR/s2ft-selection.json, so the result is a permuted checkpoint too.\n"
    "\n"
    "  -o, --output DIR           the folder to write (must not exist or be empty)\n"
    "  --force                    merge even where the adapter was made against other base weights\n"
    "  --selection PATH           the selection CKPT is permuted by\n";

namespace {

// What was applied, for messages: the file, or the files fused.
std::string applied_text(const LoadedAdapters &loaded) {
  if (loaded.paths.size() == 1) return loaded.paths[0];
  std::string out = "the fusion of";
  for (const std::string &p : loaded.paths) out += " " + p;
  return out;
}

// Where the library found the first fingerprint mismatch ("at layer 3
// target DOWN line 17"), as a weight line; "" when the message says no place.
std::string mismatch_place(const std::string &message) {
  const size_t at = message.find("at layer ");
  if (at == std::string::npos) return "";
  int layer = 0;
  char target_name[8] = {0};
  long long line = 0;
  if (std::sscanf(message.c_str() + at, "at layer %d target %7[A-Z] line %lld", &layer, target_name, &line) != 3)
    return "";
  const std::string t = target_name;
  const int32_t target = t == "O"      ? S2FT_TARGET_O
                         : t == "V"    ? S2FT_TARGET_V
                         : t == "DOWN" ? S2FT_TARGET_DOWN
                         : t == "UP"   ? S2FT_TARGET_UP
                                       : -1;
  if (target < 0 || layer < 0 || line < 0) return "";
  return " (first at " + line_text(layer, target, line) + ")";
}

// The library words a fingerprint mismatch with its C flag name; say it in
// the tool's terms.
[[noreturn]] void fingerprint_mismatch(const std::string &applied, const std::string &ckpt_dir) {
  die(applied + " was made against other base weights than those of " + ckpt_dir + mismatch_place(s2ft_last_error()) +
      "; use --force to merge anyway, or --selection SEL.json if " + ckpt_dir + " is permuted");
}

// Merges the adapters into the checkpoint's weights (in place). One adapter
// merges directly with its scale (one rounding); several are fused first
// (scales folded into the fused delta), then merged at scale 1.
void merge_into(Checkpoint &ckpt, const LoadedAdapters &loaded, const s2ft_selection *sel, bool force) {
  Progress progress("merging", 1);
  progress.note(loaded.adapters.size() > 1 ? "fusing " + std::to_string(loaded.adapters.size()) + " adapters"
                                           : "merging " + loaded.paths[0]);
  AdapterPtr fused;
  const s2ft_adapter *applied = loaded.adapters[0].get();
  double scale = loaded.scales[0];
  if (loaded.adapters.size() > 1) {
    fused = fuse_adapters(loaded);
    applied = fused.get();
    scale = 1.0;
    progress.note("merging the fused adapter");
  }
  ContextPtr ctx = make_cpu_context();
  const s2ft_model_shape shape = ckpt.shape();
  s2ft_model *model = nullptr;  // over the checkpoint's own (copy-on-write) memory
  check(s2ft_model_from_checkpoint(ctx.get(), ckpt.handle(), &shape, sel, &model));
  ModelPtr model_guard(model);
  const s2ft_status st = s2ft_adapter_apply(model, applied, scale, force ? S2FT_APPLY_FORCE : 0u);
  if (st == S2FT_ERR_FORMAT) fingerprint_mismatch(applied_text(loaded), ckpt.dir());
  check(st);
  // The merged lines stay in the weights when the model is destroyed.
}

}  // namespace

int run_merge(const Words &words) {
  const ParsedArgs args = parse_args(words, {"--output", "--selection"}, {"--force"});
  if (args.positional.size() < 2) die("expected a checkpoint folder and at least one adapter (see --help)");
  if (!args.has("--output")) die("-o OUTDIR is required");
  const std::string ckpt_dir = args.positional[0];
  std::string sel_path = args.get("--selection");
  if (sel_path.empty() && is_permuted_dir(ckpt_dir))
    sel_path = (std::filesystem::path(ckpt_dir) / kSelectionFile).string();

  std::vector<std::string> inputs = {ckpt_dir};
  const std::vector<std::string> adapter_texts(args.positional.begin() + 1, args.positional.end());
  for (const std::string &t : adapter_texts) inputs.push_back(parse_adapter_arg(t).path);
  if (!sel_path.empty()) inputs.push_back(sel_path);

  OutputDir out(args.get("--output"), inputs);
  LoadedAdapters loaded = load_adapters(adapter_texts);
  std::unique_ptr<Checkpoint> ckpt = Checkpoint::load(ckpt_dir);
  require_adapter_fits(loaded.adapters[0].get(), loaded.paths[0], ckpt->shape(), ckpt_dir);
  SelectionPtr sel;
  if (!sel_path.empty()) {
    sel = load_selection(sel_path);
    require_selection_fits(sel.get(), ckpt->shape(), sel_path);
  }

  merge_into(*ckpt, loaded, sel.get(), args.has("--force"));

  // A permuted result carries the selection it is permuted by (the one used
  // here, which may come from --selection rather than from the folder).
  out.fill([&](const std::string &dir) {
    ckpt->save(dir, {kSelectionFile});
    if (sel != nullptr) check(s2ft_selection_save(sel.get(), (std::filesystem::path(dir) / kSelectionFile).c_str()));
  });
  out.commit();  // the folder appears only now, whole
  say("merged " + std::to_string(loaded.adapters.size()) + (loaded.adapters.size() == 1 ? " adapter" : " adapters") +
      " into " + out.given());
  return 0;
}

}  // namespace cli
}  // namespace s2ft
