#include "fidelity_trace.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace ft {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// A mean that skips NaN, so one failed evaluation does not blank a whole
// average; NaN only when nothing was added.
struct Mean {
  double sum = 0.0;
  int64_t n = 0;
  void add(double x) {
    if (std::isnan(x)) return;
    sum += x;
    ++n;
  }
  double value() const { return n > 0 ? sum / static_cast<double>(n) : NAN; }
};

// Learning rates are grid values copied around, never computed, so exact
// equality groups them; NaN is folded in so that runs with an unset rate
// still form one group instead of one each.
bool same_lr(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

// Shortest decimal text that reads back to the same double (std::to_chars
// does not depend on the C locale, unlike printf). NaN is "nan" or "-nan".
std::string exact(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// ---- CSV ------------------------------------------------------------------------

// The CSV files are read by spreadsheets and pandas with default settings;
// rather than quote, names that would need quoting are refused, so a
// column never shifts.
void require_csv_safe(const std::string &s, const char *what) {
  if (s.find_first_of(",\"\n\r") != std::string::npos)
    throw std::invalid_argument(std::string(what) + " '" + s +
                                "' cannot be written to CSV (it holds a comma, quote or line break)");
}

// NaN is "no value" in the files, which pandas reads back as NaN.
std::string csv_num(double v) { return std::isnan(v) ? std::string() : exact(v); }

// Readers of the file see either the old content or the whole new one,
// never a half-written table.
void write_atomically(const std::string &path, const std::string &content) {
  const std::string tmp = path + ".tmp";
  std::error_code ignored;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(path + ": cannot open " + tmp + " for writing");
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.close();
    if (!out) {
      std::filesystem::remove(tmp, ignored);
      throw std::runtime_error(path + ": writing " + tmp + " failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ignored);
    throw std::runtime_error(path + ": cannot rename " + tmp + " to it: " + ec.message());
  }
}

// ---- run text ---------------------------------------------------------------------

constexpr const char *kRunMagic = "s2ft-run-trace 1";

// Bytes that could end a line or be altered on the way (control bytes,
// non-ASCII) and '%' itself become %XX, so any string is one line of
// plain ASCII and comes back byte for byte.
bool needs_escape(unsigned char c) { return c < 0x20 || c >= 0x7f || c == '%'; }

std::string escape(const std::string &s) {
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (needs_escape(c)) {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

[[noreturn]] void malformed(int64_t line, const std::string &problem) {
  throw std::runtime_error("parse_run: line " + std::to_string(line) + ": " + problem);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Reads the text line by line; every accessor checks before it looks, so
// hostile text ends in an exception, never past the end of the string.
class RunReader {
 public:
  explicit RunReader(const std::string &text)
      : text_(text), lines_(static_cast<uint64_t>(std::count(text.begin(), text.end(), '\n'))) {}

  std::string_view line() {
    ++line_no_;
    if (pos_ >= text_.size()) malformed(line_no_, "the text ends early (truncated)");
    const size_t end = text_.find('\n', pos_);
    if (end == std::string::npos) malformed(line_no_, "the last line has no line break (truncated)");
    std::string_view l(text_.data() + pos_, end - pos_);
    pos_ = end + 1;
    return l;
  }

  // "key value": the value is the rest of the line after one space.
  std::string_view field(const char *key) {
    const std::string_view l = line();
    const std::string_view k(key);
    if (l.size() < k.size() + 1 || l.substr(0, k.size()) != k || l[k.size()] != ' ')
      malformed(line_no_, "expected '" + std::string(k) + " ...', found '" + shown(l) + "'");
    return l.substr(k.size() + 1);
  }

  // Space-separated tokens after `key`; exactly `n` of them.
  std::vector<std::string_view> tokens(const char *key, size_t n) {
    std::string_view rest = field(key);
    std::vector<std::string_view> out;
    while (true) {
      const size_t sp = rest.find(' ');
      const std::string_view tok = rest.substr(0, sp);
      if (tok.empty()) malformed(line_no_, std::string("an empty value in '") + key + "'");
      if (out.size() == n) malformed(line_no_, std::string("too many values in '") + key + "'");
      out.push_back(tok);
      if (sp == std::string_view::npos) break;
      rest.remove_prefix(sp + 1);
    }
    if (out.size() != n)
      malformed(line_no_, std::string("'") + key + "' needs " + std::to_string(n) + " values, has " +
                              std::to_string(out.size()));
    return out;
  }

  int64_t integer(std::string_view s, const char *what) {
    int64_t v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size())
      malformed(line_no_, std::string(what) + ": '" + shown(s) + "' is not a 64-bit integer");
    return v;
  }

  double number(std::string_view s, const char *what) {
    double v = 0.0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    // to_chars writes the shortest round-trip form, so a value out of
    // range (ec == result_out_of_range) never came from serialize_run.
    if (r.ec != std::errc() || r.ptr != s.data() + s.size())
      malformed(line_no_, std::string(what) + ": '" + shown(s) + "' is not a number");
    return v;
  }

  // A count of entries that follow, each on at least one line: more than
  // the lines left is a lie, refused before anything is sized by it.
  int64_t count(std::string_view s, const char *what) {
    const int64_t n = integer(s, what);
    if (n < 0) malformed(line_no_, std::string(what) + " is negative");
    if (static_cast<uint64_t>(n) > lines_left())
      malformed(line_no_, std::string(what) + " " + std::to_string(n) + " is more than the text holds (truncated?)");
    return n;
  }

  std::string text(std::string_view s, const char *what) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      if (c == '%') {
        const int hi = i + 2 < s.size() ? hex_digit(s[i + 1]) : -1;
        const int lo = i + 2 < s.size() ? hex_digit(s[i + 2]) : -1;
        if (hi < 0 || lo < 0) malformed(line_no_, std::string(what) + ": a '%' not followed by two hex digits");
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
      } else if (needs_escape(static_cast<unsigned char>(c))) {
        malformed(line_no_, std::string(what) + ": a byte that should have been escaped");
      } else {
        out += c;
      }
    }
    return out;
  }

  bool at_end() const { return pos_ == text_.size(); }
  int64_t line_no() const { return line_no_; }

 private:
  // Complete lines not yet read.
  uint64_t lines_left() const { return lines_ - static_cast<uint64_t>(line_no_); }
  // A bounded, printable excerpt for messages: hostile text may be huge
  // or binary.
  static std::string shown(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 40)) out += c >= 0x20 && c < 0x7f ? c : '?';
    if (s.size() > 40) out += "...";
    return out;
  }

  const std::string &text_;
  const uint64_t lines_;
  size_t pos_ = 0;
  int64_t line_no_ = 0;
};

// ---- report -----------------------------------------------------------------------

// A markdown cell: '|' would split it and a line break would end the row.
std::string cell(const std::string &s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n' || c == '\r') out += ' ';
    else out += c;
  }
  return out;
}

bool any_accuracy(const std::vector<SetInfo> &sets, SetRole role) {
  return std::any_of(sets.begin(), sets.end(), [&](const SetInfo &s) { return s.role == role && s.has_accuracy; });
}

std::string retention_cell(const std::vector<Retention> &rs, bool with_accuracy) {
  if (rs.empty()) return "-";
  std::vector<double> acc, loss, kl;
  for (const Retention &r : rs) {
    acc.push_back(r.accuracy);
    loss.push_back(r.loss);
    kl.push_back(r.kl);
  }
  if (with_accuracy) return "acc " + mean_sd(acc, 3) + ", KL " + mean_sd(kl, 4);
  return "KL " + mean_sd(kl, 4) + ", loss " + mean_sd(loss, 4);
}

std::string set_names(const std::vector<SetInfo> &sets, SetRole role) {
  std::string out;
  for (const SetInfo &s : sets) {
    if (s.role != role) continue;
    if (!out.empty()) out += ", ";
    out += s.name;
  }
  return out.empty() ? std::string("(none)") : out;
}

// ---- summary ----------------------------------------------------------------------

struct LrGroup {
  double lr = 0.0;
  std::vector<const RunTrace *> runs;
  int64_t matched = 0;
  double score = -INFINITY;  // mean retention score at match over matched runs
};

struct MethodGroup {
  std::string method;
  std::vector<LrGroup> lrs;
};

// Whether rate a is the better choice than b, by the header's order of
// criteria; the last one makes the choice independent of the order the
// runs came in.
bool better(const LrGroup &a, const LrGroup &b) {
  const bool all_a = a.matched == static_cast<int64_t>(a.runs.size());
  const bool all_b = b.matched == static_cast<int64_t>(b.runs.size());
  if (all_a != all_b) return all_a;
  if (a.matched != b.matched) return a.matched > b.matched;
  if (a.score != b.score) return a.score > b.score;
  return a.lr < b.lr;
}

}  // namespace

std::string fixed(double v, int digits) {
  digits = std::clamp(digits, 0, 30);
  char buf[512];  // ample for |v| up to 1e308 with 30 decimals
  const int n = std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return std::string(buf, n > 0 ? std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1) : 0);
}

std::string rate_text(double v) {
  char buf[64];
  for (int prec = 0; prec <= 3; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*e", prec, v);
    if (std::strtod(buf, nullptr) == v) return buf;
  }
  return buf;
}

const char *role_name(SetRole role) {
  switch (role) {
    case SetRole::New:
      return "new";
    case SetRole::Retain:
      return "retain";
    case SetRole::Contradicted:
      return "contradicted";
  }
  return "unknown";  // a value cast from an integer outside the enum
}

bool meets(const MatchRule &rule, const TracePoint &p) {
  if (rule.set < 0 || static_cast<size_t>(rule.set) >= p.sets.size()) return false;
  const SetMetrics &m = p.sets[static_cast<size_t>(rule.set)];
  // Every comparison with NaN is false: a missing metric never counts as learnt.
  return rule.by_loss ? m.loss <= rule.target : m.accuracy >= rule.target;
}

MatchPoints find_match(const RunTrace &run, const MatchRule &rule) {
  MatchPoints mp;
  const auto n = static_cast<int64_t>(run.points.size());
  for (int64_t i = 0; i < n; ++i) {
    const TracePoint &p = run.points[static_cast<size_t>(i)];
    // Step 0 is the base model: meeting the target there is no learning.
    if (p.step > 0 && meets(rule, p)) {
      mp.match = i;
      break;
    }
  }
  if (mp.match < 0) return mp;
  if (rule.overtrain <= 1) {
    mp.over = mp.match;
    return mp;
  }
  const int64_t step = run.points[static_cast<size_t>(mp.match)].step;
  // A target step beyond int64 cannot be reached by any traced step.
  if (step > std::numeric_limits<int64_t>::max() / rule.overtrain) return mp;
  const int64_t target = step * rule.overtrain;
  for (int64_t j = mp.match + 1; j < n; ++j)
    if (run.points[static_cast<size_t>(j)].step >= target) {
      mp.over = j;
      break;
    }
  return mp;
}

Retention retention_at(const TracePoint &p, const std::vector<SetInfo> &sets, SetRole role) {
  Mean acc, loss, kl;
  const size_t n = std::min(p.sets.size(), sets.size());
  for (size_t i = 0; i < n; ++i) {
    if (sets[i].role != role) continue;
    const SetMetrics &m = p.sets[i];
    // Accuracy of a set without one (sampled text) is noise, not retention.
    if (sets[i].has_accuracy) acc.add(m.accuracy);
    loss.add(m.loss);
    kl.add(m.kl);
  }
  Retention r;
  r.accuracy = acc.value();
  r.loss = loss.value();
  r.kl = kl.value();
  return r;
}

double retention_score(const Retention &r) { return std::isnan(r.accuracy) ? -r.kl : r.accuracy; }

std::vector<MethodSummary> summarize(const std::vector<RunTrace> &runs, const std::vector<SetInfo> &sets,
                                     const MatchRule &rule) {
  std::vector<MethodGroup> groups;
  for (const RunTrace &run : runs) {
    auto g = std::find_if(groups.begin(), groups.end(), [&](const MethodGroup &x) { return x.method == run.method; });
    if (g == groups.end()) {
      groups.push_back(MethodGroup{run.method, {}});
      g = groups.end() - 1;
    }
    auto l = std::find_if(g->lrs.begin(), g->lrs.end(), [&](const LrGroup &x) { return same_lr(x.lr, run.lr); });
    if (l == g->lrs.end()) {
      g->lrs.push_back(LrGroup{run.lr, {}, 0, -INFINITY});
      l = g->lrs.end() - 1;
    }
    l->runs.push_back(&run);
  }

  std::vector<MethodSummary> out;
  for (MethodGroup &g : groups) {
    for (LrGroup &l : g.lrs) {
      Mean score;
      bool unscored = false;
      for (const RunTrace *run : l.runs) {
        if (!run->error.empty()) continue;
        const MatchPoints mp = find_match(*run, rule);
        if (mp.match < 0) continue;
        ++l.matched;
        const double s =
            retention_score(retention_at(run->points[static_cast<size_t>(mp.match)], sets, SetRole::Retain));
        // A seed whose retention cannot be scored must not be averaged
        // away by the others: it sinks the rate (NaN counts as -inf).
        if (std::isnan(s)) unscored = true;
        score.add(s);
      }
      l.score = unscored || score.n == 0 ? -INFINITY : score.value();
      if (std::isnan(l.score)) l.score = -INFINITY;  // +inf and -inf scores averaged
    }
    const LrGroup *best = &g.lrs.front();
    for (const LrGroup &l : g.lrs)
      if (better(l, *best)) best = &l;

    MethodSummary s;
    s.method = g.method;
    s.best_lr = best->lr;
    s.runs = static_cast<int64_t>(best->runs.size());
    s.matched = best->matched;
    // Sizes come from a run that finished where there is one: a failed run
    // may not have filled them in.
    const RunTrace *first = best->runs.front();
    for (const RunTrace *run : best->runs)
      if (run->error.empty()) {
        first = run;
        break;
      }
    s.params = first->params;
    s.state_bytes = first->state_bytes;
    for (const RunTrace *run : best->runs) {
      // A failed run's timing and memory are of a run cut short.
      if (!run->error.empty()) continue;
      s.ms_per_step.push_back(1e3 * run->seconds_per_step);
      s.peak_rss_mib.push_back(static_cast<double>(run->peak_rss) / kMiB);
      const MatchPoints mp = find_match(*run, rule);
      if (mp.match < 0) continue;
      const TracePoint &pm = run->points[static_cast<size_t>(mp.match)];
      s.match_step.push_back(static_cast<double>(pm.step));
      s.retain_match.push_back(retention_at(pm, sets, SetRole::Retain));
      s.contra_match.push_back(retention_at(pm, sets, SetRole::Contradicted));
      if (mp.over < 0) continue;
      const TracePoint &po = run->points[static_cast<size_t>(mp.over)];
      s.retain_over.push_back(retention_at(po, sets, SetRole::Retain));
      s.contra_over.push_back(retention_at(po, sets, SetRole::Contradicted));
    }
    for (const LrGroup &l : g.lrs) s.lrs_tried.push_back(l.lr);
    // NaN last, so that the comparison is a strict weak order.
    std::sort(s.lrs_tried.begin(), s.lrs_tried.end(),
              [](double a, double b) { return std::isnan(b) ? !std::isnan(a) : a < b; });
    out.push_back(std::move(s));
  }
  return out;
}

std::string mean_sd(const std::vector<double> &v, int digits) {
  Mean m;
  for (double x : v) m.add(x);
  if (m.n == 0) return "-";
  const double mean = m.value();
  if (m.n == 1) return fixed(mean, digits);
  double ss = 0.0;
  for (double x : v)
    if (!std::isnan(x)) ss += (x - mean) * (x - mean);
  const double sd = std::sqrt(ss / static_cast<double>(m.n - 1));
  return fixed(mean, digits) + " ± " + fixed(sd, digits);
}

void print_report(std::ostream &out, const std::vector<MethodSummary> &summaries, const std::vector<SetInfo> &sets,
                  const MatchRule &rule) {
  const bool contra = std::any_of(sets.begin(), sets.end(),
                                  [](const SetInfo &s) { return s.role == SetRole::Contradicted; });
  const std::string n = std::to_string(rule.overtrain);
  const bool retain_acc = any_accuracy(sets, SetRole::Retain);
  const bool contra_acc = any_accuracy(sets, SetRole::Contradicted);

  auto row = [&out](const std::vector<std::string> &cells) {
    out << "|";
    for (const std::string &c : cells) out << " " << c << " |";
    out << "\n";
  };
  std::vector<std::string> head = {"method",         "trainable params",   "training state",
                                   "time/step",      "best lr (of grid)",  "steps to match",
                                   "retention at match", "retention after " + n + "x"};
  if (contra) {
    head.push_back("contradicted at match");
    head.push_back("contradicted after " + n + "x");
  }
  row(head);
  out << "|";
  for (size_t i = 0; i < head.size(); ++i) out << "---|";
  out << "\n";

  for (const MethodSummary &s : summaries) {
    std::string lr = rate_text(s.best_lr);
    if (s.lrs_tried.size() > 1) lr += " (" + rate_text(s.lrs_tried.front()) + ".." + rate_text(s.lrs_tried.back()) + ")";
    std::vector<std::string> cells = {
        cell(s.method),
        std::to_string(s.params),
        fixed(static_cast<double>(s.state_bytes) / kMiB, 2) + " MiB",
        s.ms_per_step.empty() ? "-" : mean_sd(s.ms_per_step, 1) + " ms",
        lr,
        mean_sd(s.match_step, 0) + " (" + std::to_string(s.matched) + "/" + std::to_string(s.runs) + ")",
        retention_cell(s.retain_match, retain_acc),
        retention_cell(s.retain_over, retain_acc)};
    if (contra) {
      cells.push_back(retention_cell(s.contra_match, contra_acc));
      cells.push_back(retention_cell(s.contra_over, contra_acc));
    }
    row(cells);
  }

  const std::string new_set = rule.set >= 0 && static_cast<size_t>(rule.set) < sets.size()
                                  ? sets[static_cast<size_t>(rule.set)].name
                                  : "set #" + std::to_string(rule.set);
  char target[64];
  std::snprintf(target, sizeof target, "%g", rule.target);
  out << "matched learning: the first traced point where " << new_set << (rule.by_loss ? " loss <= " : " accuracy >= ")
      << target << "; after " << n << "x: the first traced point at or after " << n
      << "x that step; retention = mean over " << set_names(sets, SetRole::Retain);
  if (contra) out << "; contradicted = mean over " << set_names(sets, SetRole::Contradicted);
  out << "; means ± sd over seeds\n";
}

void write_traces_csv(const std::string &path, const std::vector<RunTrace> &runs, const std::vector<SetInfo> &sets) {
  for (const SetInfo &s : sets) require_csv_safe(s.name, "set name");
  std::string csv = "method,lr,seed,step,step_lr,train_loss,set,role,accuracy,loss,kl\n";
  for (const RunTrace &run : runs) {
    require_csv_safe(run.method, "method name");
    const std::string head = run.method + "," + csv_num(run.lr) + "," + std::to_string(run.seed) + ",";
    for (const TracePoint &p : run.points) {
      if (p.sets.size() > sets.size())
        throw std::invalid_argument("write_traces_csv: a point of " + run.method + " has " +
                                    std::to_string(p.sets.size()) + " set metrics for " +
                                    std::to_string(sets.size()) + " sets");
      const std::string point = head + std::to_string(p.step) + "," + csv_num(p.lr) + "," + csv_num(p.train_loss) + ",";
      for (size_t i = 0; i < p.sets.size(); ++i) {
        const SetMetrics &m = p.sets[i];
        csv += point + sets[i].name + "," + role_name(sets[i].role) + "," + csv_num(m.accuracy) + "," +
               csv_num(m.loss) + "," + csv_num(m.kl) + "\n";
      }
    }
  }
  write_atomically(path, csv);
}

void write_results_csv(const std::string &path, const std::vector<RunTrace> &runs, const std::vector<SetInfo> &sets,
                       const MatchRule &rule, const std::vector<MethodSummary> &summaries) {
  std::string csv =
      "method,lr,seed,params,state_bytes,ms_per_step,peak_rss_mib,match_step,over_step,"
      "new_match,retain_acc_match,retain_loss_match,retain_kl_match,contra_acc_match,"
      "retain_acc_over,retain_loss_over,retain_kl_over,contra_acc_over,best_lr\n";
  for (const RunTrace &run : runs) {
    require_csv_safe(run.method, "method name");
    // As in summarize(): a failed run reached nothing.
    const MatchPoints mp = run.error.empty() ? find_match(run, rule) : MatchPoints{};
    const TracePoint *pm = mp.match >= 0 ? &run.points[static_cast<size_t>(mp.match)] : nullptr;
    const TracePoint *po = mp.over >= 0 ? &run.points[static_cast<size_t>(mp.over)] : nullptr;
    double new_match = NAN;
    if (pm) {
      const SetMetrics &m = pm->sets[static_cast<size_t>(rule.set)];  // in range: meets() checked it
      new_match = rule.by_loss ? m.loss : m.accuracy;
    }
    const Retention none;
    const Retention rm = pm ? retention_at(*pm, sets, SetRole::Retain) : none;
    const Retention cm = pm ? retention_at(*pm, sets, SetRole::Contradicted) : none;
    const Retention ro = po ? retention_at(*po, sets, SetRole::Retain) : none;
    const Retention co = po ? retention_at(*po, sets, SetRole::Contradicted) : none;
    const bool best = std::any_of(summaries.begin(), summaries.end(), [&](const MethodSummary &s) {
      return s.method == run.method && same_lr(s.best_lr, run.lr);
    });
    csv += run.method + "," + csv_num(run.lr) + "," + std::to_string(run.seed) + "," + std::to_string(run.params) +
           "," + std::to_string(run.state_bytes) + "," + csv_num(1e3 * run.seconds_per_step) + "," +
           csv_num(static_cast<double>(run.peak_rss) / kMiB) + "," + std::to_string(pm ? pm->step : -1) + "," +
           std::to_string(po ? po->step : -1) + "," + csv_num(new_match) + "," + csv_num(rm.accuracy) + "," +
           csv_num(rm.loss) + "," + csv_num(rm.kl) + "," + csv_num(cm.accuracy) + "," + csv_num(ro.accuracy) + "," +
           csv_num(ro.loss) + "," + csv_num(ro.kl) + "," + csv_num(co.accuracy) + "," + (best ? "1" : "0") + "\n";
  }
  write_atomically(path, csv);
}

std::string serialize_run(const RunTrace &run) {
  std::string t = std::string(kRunMagic) + "\n";
  t += "method " + escape(run.method) + "\n";
  t += "lr " + exact(run.lr) + "\n";
  t += "seed " + std::to_string(run.seed) + "\n";
  t += "params " + std::to_string(run.params) + "\n";
  t += "state_bytes " + std::to_string(run.state_bytes) + "\n";
  t += "peak_rss " + std::to_string(run.peak_rss) + "\n";
  t += "seconds_per_step " + exact(run.seconds_per_step) + "\n";
  t += "error " + escape(run.error) + "\n";
  t += "checks " + escape(run.checks) + "\n";
  t += std::string("checks_ok ") + (run.checks_ok ? "1" : "0") + "\n";
  t += "points " + std::to_string(run.points.size()) + "\n";
  for (const TracePoint &p : run.points) {
    t += "point " + std::to_string(p.step) + " " + exact(p.lr) + " " + exact(p.train_loss) + " " +
         std::to_string(p.sets.size()) + "\n";
    for (const SetMetrics &m : p.sets) t += "set " + exact(m.accuracy) + " " + exact(m.loss) + " " + exact(m.kl) + "\n";
  }
  t += "end\n";
  return t;
}

RunTrace parse_run(const std::string &text) {
  RunReader in(text);
  if (in.line() != kRunMagic) malformed(in.line_no(), std::string("not a run trace (expected '") + kRunMagic + "')");
  RunTrace run;
  run.method = in.text(in.field("method"), "method");
  run.lr = in.number(in.field("lr"), "lr");
  run.seed = in.integer(in.field("seed"), "seed");
  run.params = in.integer(in.field("params"), "params");
  run.state_bytes = in.integer(in.field("state_bytes"), "state_bytes");
  run.peak_rss = in.integer(in.field("peak_rss"), "peak_rss");
  run.seconds_per_step = in.number(in.field("seconds_per_step"), "seconds_per_step");
  run.error = in.text(in.field("error"), "error");
  run.checks = in.text(in.field("checks"), "checks");
  const std::string_view ok = in.field("checks_ok");
  if (ok != "0" && ok != "1") malformed(in.line_no(), "checks_ok must be 0 or 1");
  run.checks_ok = ok == "1";
  const int64_t n_points = in.count(in.field("points"), "points");
  for (int64_t i = 0; i < n_points; ++i) {
    const auto pt = in.tokens("point", 4);
    TracePoint p;
    p.step = in.integer(pt[0], "point step");
    p.lr = in.number(pt[1], "point lr");
    p.train_loss = in.number(pt[2], "point train_loss");
    const int64_t n_sets = in.count(pt[3], "point sets");
    for (int64_t j = 0; j < n_sets; ++j) {
      const auto st = in.tokens("set", 3);
      SetMetrics m;
      m.accuracy = in.number(st[0], "set accuracy");
      m.loss = in.number(st[1], "set loss");
      m.kl = in.number(st[2], "set kl");
      p.sets.push_back(m);
    }
    run.points.push_back(std::move(p));
  }
  if (in.line() != "end") malformed(in.line_no(), "expected 'end'");
  if (!in.at_end()) malformed(in.line_no() + 1, "text after 'end'");
  // Each value has one spelling ("5" not "05", "!" not "%21", "0.001" not
  // "1e-3"); text that reads back but is spelt otherwise was not made by
  // serialize_run, which is what the header promises to refuse.
  const std::string canonical = serialize_run(run);
  if (canonical != text) {
    const auto diff = std::mismatch(canonical.begin(), canonical.end(), text.begin(), text.end()).second;
    malformed(1 + std::count(text.begin(), diff, '\n'), "a value not written as serialize_run writes it");
  }
  return run;
}

}  // namespace ft
