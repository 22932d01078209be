// libFuzzer target: the s2ft tool's command-line parsing (src/cli/args.cpp,
// selection_options.cpp, adapter_args.cpp). An input is a mode byte and
// then words separated by NUL bytes, as the kernel hands them to main() (a
// word cannot contain NUL). Every parser must return or throw CliError: no
// crash, no undefined behaviour, no other exception. The modes:
//
//   0  parse_args with option tables from the input (word 0: value options,
//      word 1: flags, both comma-separated; the rest are the tokens). What
//      it accepts must survive a round trip: written back canonically (flags,
//      then --name=value, then "--" and the positionals) it parses to the
//      same result.
//   1  the command line of `s2ft permute` (the selection options of `s2ft
//      select` and --output, --selection, --inverse) through parse_args and
//      select_options_from_args. Options the tool accepts must be options
//      the library accepts: s2ft_select (random strategy, on a small model)
//      succeeds whenever the counts fit the model and otherwise refuses them
//      with S2FT_ERR_INVALID_ARGUMENT.
//   2  the value parsers on each word: parse_double, parse_int64 and
//      parse_uint64 (an accepted number is the one written), split_list
//      (non-empty parts without the separator that join to the text without
//      it) and parse_adapter_arg ("PATH:SCALE").
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "adapter_args.hpp"
#include "args.hpp"
#include "errors.hpp"
#include "handles.hpp"
#include "selection_options.hpp"

namespace {

using s2ft::cli::CliError;
using s2ft::cli::ParsedArgs;

[[noreturn]] void finding(const std::string &what) {
  std::fprintf(stderr, "fuzz_cli_args: %s\n", what.c_str());
  std::abort();
}

std::vector<std::string> split_words(const uint8_t *data, size_t size) {
  std::vector<std::string> words(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) words.emplace_back();
    else words.back() += static_cast<char>(data[i]);
  }
  return words;
}

bool same(const ParsedArgs &a, const ParsedArgs &b) {
  return a.positional == b.positional && a.values == b.values && a.flags == b.flags;
}

void generic(const std::vector<std::string> &words) {
  if (words.size() < 2) return;
  const std::vector<std::string> value_options = s2ft::cli::split_list(words[0], ',');
  const std::vector<std::string> flag_options = s2ft::cli::split_list(words[1], ',');
  const std::vector<std::string> tokens(words.begin() + 2, words.end());
  ParsedArgs parsed;
  try {
    parsed = s2ft::cli::parse_args(tokens, value_options, flag_options);
  } catch (const CliError &) {
    return;
  }
  std::vector<std::string> canonical;
  for (const std::string &f : parsed.flags) canonical.push_back(f);
  for (const auto &kv : parsed.values) canonical.push_back(kv.first + "=" + kv.second);
  canonical.push_back("--");
  for (const std::string &p : parsed.positional) canonical.push_back(p);
  ParsedArgs again;
  try {
    again = s2ft::cli::parse_args(canonical, value_options, flag_options);
  } catch (const CliError &e) {
    finding(std::string("the canonical form of an accepted command line is refused: ") + e.what());
  }
  if (!same(parsed, again)) finding("the canonical form of an accepted command line parses differently");
}

s2ft_context *context() {
  static s2ft::cli::ContextPtr ctx = s2ft::cli::make_cpu_context();
  return ctx.get();
}

void permute_command(const std::vector<std::string> &words) {
  std::vector<std::string> value_options = s2ft::cli::selection_value_options();
  value_options.push_back("--output");
  value_options.push_back("--selection");
  s2ft_select_options opts;
  try {
    const ParsedArgs args = s2ft::cli::parse_args(words, value_options, {"--inverse"});
    opts = s2ft::cli::select_options_from_args(args);
  } catch (const CliError &) {
    return;
  }
  // A small GQA model: 2 layers, 4 query heads in 2 KV groups, 6 channels.
  const s2ft_model_shape shape = {2, 8, 4, 2, 2, 6};
  const bool global = opts.allocation == S2FT_ALLOCATE_GLOBAL;
  const int64_t o_units = opts.head_granularity == S2FT_HEADS_SINGLE ? shape.n_heads : shape.n_kv_heads;
  const int64_t units[S2FT_NUM_TARGETS] = {o_units, shape.n_kv_heads, shape.d_ff, shape.d_ff};
  bool fits = true;
  for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t)
    if ((opts.targets & S2FT_TARGET_BIT(t)) && opts.count[t] > units[t] * (global ? shape.n_layers : 1)) fits = false;
  opts.strategy = S2FT_STRATEGY_RANDOM;  // the weight strategy would need statistics
  s2ft_selection *sel = nullptr;
  const s2ft_status status = s2ft_select(context(), &shape, &opts, nullptr, &sel);
  s2ft_selection_destroy(sel);
  if (fits ? status != S2FT_OK : status != S2FT_ERR_INVALID_ARGUMENT)
    finding(std::string("s2ft_select disagrees with the tool's options: ") + s2ft_last_error());
}

// The integer a parser accepted must be the one the text spells: an
// optional sign, then digits (after any leading blanks strto* skips).
std::string digits_of(const std::string &text, bool *negative) {
  size_t i = 0;
  while (i < text.size() && (text[i] == ' ' || (text[i] >= '\t' && text[i] <= '\r'))) ++i;
  *negative = false;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) *negative = text[i++] == '-';
  while (i + 1 < text.size() && text[i] == '0') ++i;
  return text.substr(i);
}

void value_parsers(const std::string &w) {
  try {
    const double v = s2ft::cli::parse_double("--x", w);
    if (!std::isfinite(v)) finding("parse_double accepted a non-finite number");
  } catch (const CliError &) {
  }
  try {
    const int64_t v = s2ft::cli::parse_int64("--x", w);
    bool negative = false;
    const std::string digits = digits_of(w, &negative);
    const std::string written = std::to_string(v);
    if (written != (negative && digits != "0" ? "-" : "") + digits)
      finding("parse_int64 accepted '" + w + "' as " + written);
  } catch (const CliError &) {
  }
  try {
    const uint64_t v = s2ft::cli::parse_uint64("--x", w);
    bool negative = false;
    const std::string digits = digits_of(w, &negative);
    if ((negative && digits != "0") || std::to_string(v) != digits)
      finding("parse_uint64 accepted '" + w + "' as " + std::to_string(v));
  } catch (const CliError &) {
  }
  std::string joined, without;
  for (const std::string &part : s2ft::cli::split_list(w, ',')) {
    if (part.empty() || part.find(',') != std::string::npos) finding("split_list gave an empty part or a separator");
    joined += part;
  }
  for (char c : w)
    if (c != ',') without += c;
  if (joined != without) finding("split_list lost or added characters");
  // Without a ':' the argument is a path whatever the file system holds;
  // skipping those saves a stat() per word.
  if (w.find(':') == std::string::npos) return;
  try {
    const s2ft::cli::AdapterArg a = s2ft::cli::parse_adapter_arg(w);
    if (a.has_scale && (!std::isfinite(a.scale) || a.path.empty() || w.compare(0, a.path.size() + 1, a.path + ":") != 0))
      finding("parse_adapter_arg split '" + w + "' wrongly");
    if (!a.has_scale && a.path != w) finding("parse_adapter_arg changed a path it took whole");
  } catch (const CliError &) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  const std::vector<std::string> words = split_words(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0: generic(words); break;
    case 1: permute_command(words); break;
    default:
      for (const std::string &w : words) value_parsers(w);
      break;
  }
  return 0;
}
