#include "real_finetune.hpp"

#include <cmath>
#include <filesystem>
#include <iomanip>
#include <ostream>
#include <stdexcept>
#include <vector>

#include "checkpoint.hpp"
#include "generate.hpp"
#include "llama_model.hpp"
#include "real_comparison.hpp"
#include "s2ft_handles.hpp"
#include "s2ft_check.hpp"
#include "s2ft_verify.hpp"
#include "s2ft_method.hpp"
#include "text_data.hpp"
#include "tokenizer.hpp"
#include "trainer.hpp"

namespace fs = std::filesystem;

namespace ft {

namespace {

std::string default_tokenizer(const std::string &model) {
  const fs::path p(model);
  return ((fs::is_directory(p) ? p : p.parent_path()) / "tok512.bin").string();
}

double mean_loss(LlamaModel<float> &model, const std::vector<Batch> &batches) {
  double sum = 0.0;
  for (const Batch &b : batches) sum += model.forward(b.tokens.data(), b.batch, b.seq, b.targets.data(), false);
  return batches.empty() ? NAN : sum / static_cast<double>(batches.size());
}

void print_samples(const char *title, LlamaModel<float> &model, const Tokenizer &tok, std::ostream &out) {
  out << "== " << title << " ==\n";
  for (const char *prompt : {"", "One day"}) {
    const std::vector<int32_t> start = tok.encode(prompt, true, false);
    const std::vector<int32_t> text = generate_greedy(model, start, 60, tok.eos());
    out << "  [" << (*prompt ? prompt : "BOS") << "] " << tok.decode(text) << "\n";
  }
}

// Replaces one of our output folders.
void fresh_folder(const fs::path &p) {
  if (fs::exists(p)) fs::remove_all(p);
}

}  // namespace

int run_real_finetune(const RealFinetuneSettings &s, std::ostream &out) {
  const Checkpoint base = load_checkpoint(s.model);
  const LlamaConfig &cfg = base.config;
  const Tokenizer tok = Tokenizer::load(s.tokenizer.empty() ? default_tokenizer(s.model) : s.tokenizer, cfg.vocab);
  const TextData data(s.data, tok);
  if (s.seq > cfg.max_seq)
    throw std::invalid_argument("--seq " + std::to_string(s.seq) + " is longer than the model's context (" +
                                std::to_string(cfg.max_seq) + ")");
  if (s.compare) real_comparison_methods(s, cfg);  // an unknown --methods name fails before any training
  out << "model " << s.model << ": " << cfg.describe() << ", " << parameter_count(base.weights) << " parameters\n";
  out << "data " << s.data << ": " << data.documents() << " documents (" << data.eval_documents() << " held out), "
      << data.train_tokens() << " training and " << data.eval_tokens() << " held-out tokens\n";
  const std::vector<Batch> eval = data.eval_batches(s.batch, s.seq, 8);

  LlamaWeights<float> w = base.weights;
  LlamaModel<float> model(cfg, w);
  print_samples("before fine-tuning", model, tok, out);
  const double eval_before = mean_loss(model, eval);

  s2ft_context *ctx_raw = nullptr;
  s2ft_check(s2ft_context_create(nullptr, &ctx_raw), "s2ft_context_create");
  ContextPtr ctx(ctx_raw);
  Rng rng(s.seed);
  std::vector<Batch> calibration;
  for (int i = 0; i < 4; ++i) calibration.push_back(data.sample(s.batch, s.seq, rng));
  S2ftSettings ss = real_s2ft_settings(cfg, s.targets);
  ss.seed = s.seed;
  S2ftFineTuning method(ctx.get(), OptimizerSettings{}, ss, calibration);
  method.attach(model);
  out << "S2FT: " << method.trainable_parameters() << " trainable parameters ("
      << std::setprecision(3) << 100.0 * static_cast<double>(method.trainable_parameters()) /
                                     static_cast<double>(parameter_count(base.weights))
      << "% of the model)\n";

  TrainSettings ts;
  ts.steps = s.steps;
  ts.lr = s.lr;
  const TrainStats st = train(model, method, [&](int64_t) { return data.sample(s.batch, s.seq, rng); }, ts,
                              [&](int64_t step, double loss, double) {
                                if ((step + 1) % 50 == 0 || step == 0)
                                  out << "  step " << step + 1 << "/" << ts.steps << ": loss " << std::fixed
                                      << std::setprecision(4) << loss << std::defaultfloat << "\n";
                                out.flush();
                                return true;
                              });
  const double eval_after = mean_loss(model, eval);
  out << std::fixed << std::setprecision(4) << "held-out loss: " << eval_before << " -> " << eval_after << " ("
      << std::setprecision(1) << 1e3 * st.seconds_per_step << " ms/step)\n"
      << std::defaultfloat << std::setprecision(6);

  // Export: trained minus base slices, in the base model's order.
  LlamaWeights<float> base_permuted = base.weights;
  method.permute(base_permuted, S2FT_PERMUTE_FORWARD);
  AdapterPtr adapter = method.make_adapter(base_permuted, w, "finetune");
  method.permute(w, S2FT_PERMUTE_INVERSE);
  const FrozenCheck fc = check_frozen(cfg, method.selection(), base.weights, w);
  out << "frozen weights changed: " << fc.changed_frozen << " elements"
      << (fc.changed_frozen ? " (first: " + fc.first_changed + ")" : "") << "; trained elements changed: "
      << fc.changed_trained << " of " << fc.trained_elements << "\n";

  const fs::path dir(s.out);
  fs::create_directories(dir);
  const std::string adapter_path = (dir / "adapter.safetensors").string();
  s2ft_check(s2ft_adapter_save(adapter.get(), adapter_path.c_str()), "s2ft_adapter_save");
  s2ft_check(s2ft_selection_save(method.selection(), (dir / "selection.json").string().c_str()),
             "s2ft_selection_save");
  out << "wrote " << adapter_path << " and " << (dir / "selection.json").string() << "\n";

  // The adapter merged into the unpermuted base. A Hugging Face folder is
  // merged by libs2ft (what `s2ft merge` does) into OUT/merged, which is
  // then loaded back like any checkpoint; a llama2.c file has no folder to
  // copy, so it is merged in memory.
  const std::string merged_dir = (dir / "merged").string();
  fresh_folder(merged_dir);  // never leave a previous run's merge beside this adapter
  LlamaWeights<float> merged;
  std::string merged_what = "merged checkpoint", merged_title = "merged checkpoint";
  if (fs::is_directory(s.model)) {
    merge_hf_checkpoint(ctx.get(), s.model, adapter_path, merged_dir);
    out << "merged " << adapter_path << " into " << s.model << " with libs2ft: wrote " << merged_dir << "\n"
        << "  (the same with the s2ft tool: s2ft merge " << s.model << " " << adapter_path << " -o " << merged_dir
        << ")\n";
    merged = load_hf_checkpoint(merged_dir).weights;
  } else {
    // The adapter as saved, so that the file is what is checked.
    s2ft_adapter *loaded_raw = nullptr;
    s2ft_check(s2ft_adapter_load(adapter_path.c_str(), &loaded_raw), "s2ft_adapter_load");
    AdapterPtr loaded(loaded_raw);
    merged = merge_adapter(ctx.get(), cfg, base.weights, loaded.get());
    merged_what = "merged model";
    merged_title = "merged in memory";
    out << "merged " << adapter_path << " into " << s.model << " in memory (s2ft_model_create + s2ft_adapter_apply); "
        << merged_dir << " is written only for Hugging Face inputs\n";
  }
  const double diff = max_logit_difference(cfg, merged, w, eval.empty() ? data.sample(1, s.seq, rng) : eval[0]);
  out << merged_what << " vs fine-tuned model: max |logit difference| " << std::scientific << std::setprecision(2)
      << diff << std::defaultfloat << "\n";
  LlamaModel<float> tuned(cfg, merged);
  print_samples(("after fine-tuning (" + merged_title + ")").c_str(), tuned, tok, out);
  // Without held-out text (a tiny file) the loss check is skipped.
  bool ok = fc.changed_frozen == 0 && fc.changed_trained > 0 && diff <= 1e-4 &&
            (eval.empty() || eval_after < eval_before);
  if (!ok) out << "S2FT end to end: some checks FAILED\n";
  if (s.compare && run_real_comparison(s, cfg, base.weights, tok, data, out) > 0) ok = false;
  // The one verdict, last, over both parts.
  out << (ok ? "all checks passed\n" : "some checks FAILED\n");
  return ok ? 0 : 1;
}

}  // namespace ft
