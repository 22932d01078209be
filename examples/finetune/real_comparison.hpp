// The fidelity protocol (fidelity_trace.hpp) on a real checkpoint and a
// text file: every method of standard_methods() fine-tunes the checkpoint
// on the training documents, each run traced on
//  - "held-out": whole documents of the file that no training window
//    touches (the new task; loss, next-token accuracy);
//  - "base-samples": text the base model itself sampled (temperature 1,
//    from BOS) before any fine-tuning, so that KL(base || tuned) on it
//    measures how far the model moved from what it was, with no labels and
//    no access to the original training data;
//  - "retain-text" (with --retain-data): text like the base model's
//    training data, for its loss as well as the KL.
// Runs are matched where the held-out loss first reaches a target. The
// target is either given or halfway from the base model's held-out loss to
// the worst method's best (its best rate, by that rate's worst seed). That
// is only known once every run is done, so every run trains all its steps
// and the matched points are read off the traces afterwards.
#pragma once

#include <iosfwd>
#include <vector>

#include "llama_config.hpp"
#include "llama_weights.hpp"
#include "methods.hpp"
#include "real_finetune.hpp"
#include "s2ft_method.hpp"
#include "text_data.hpp"
#include "tokenizer.hpp"

namespace ft {

// S2FT's budget in the --model mode, the end-to-end run's and the
// comparison's small budget: one KV group of O, ~5% of the DOWN channels
// (and one V head and as many UP channels when those are trained).
S2ftSettings real_s2ft_settings(const LlamaConfig &c, uint32_t targets);

// The methods the comparison runs (standard_methods(), picked by
// s.methods), with their rates. Throws std::invalid_argument on an unknown
// name, so a caller can check before it trains anything.
std::vector<MethodSpec> real_comparison_methods(const RealFinetuneSettings &s, const LlamaConfig &c);

// Runs the comparison, printing progress, the target, the CSV files written
// to s.out and the table to `out`. Returns the number of failed checks (a
// run that failed or whose training loss did not fall).
int run_real_comparison(const RealFinetuneSettings &s, const LlamaConfig &cfg, const LlamaWeights<float> &base,
                        const Tokenizer &tok, const TextData &data, std::ostream &out);

}  // namespace ft
