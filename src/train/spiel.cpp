// SpIEL (Ansell et al., 2024): the schedule that moves the trained entries
// of one sparse optimizer parameter during training (s2ft_spiel_*). The
// semantics follow the reference implementation (AlanAnsell/peft,
// src/peft/tuners/sft/trainer.py: SftSelector; optimizer.py: SftAdamW,
// SftSM3); include/s2ft/s2ft.h has the rules and docs/api.md how a
// training loop uses them. Where this differs from the reference, on
// purpose:
//  - every window is the M steps before its reselection (the reference's
//    hooks also catch step j * N before later windows: M + 1 gradients);
//  - the dense gradient is formed on the window's first call only (the
//    reference forms it on every step of the window and gathers the
//    candidates from it); later calls use the SDDMM at the candidates;
//  - a seeded age a makes AdamW's next step correct with a + 1 (the
//    reference's counter, which starts at 1, corrects with a: one step
//    short of the a gradients in the seeded moments);
//  - MA's regrown entries start with zero optimizer state (the reference
//    leaves the SM3 momentum of the slot's previous entry in place);
//  - entries of other sparse parameters of the weight are never regrown.
//
// The work per step is small and goes through the context's backend:
//  - AG, first observe call of a window: the dense dW = dy^T x (the only
//    one the library forms) to the host, and the `candidates` entries of
//    largest |dW| chosen there (a bounded heap: memory O(candidates));
//  - AG, every observe call of a window: the SDDMM gradient at the
//    candidates, added into device sums (sum g, sum g^2);
//  - MA with activations: per-row sums of dy^2 and per-column sums of x^2
//    (the statistics operations), O(T * (in + out));
//  - a reselection: the trained values (or f32 masters) and, for MA, the
//    accumulators come to the host; the choice is made there; the dropped
//    entries' base bytes go back into the weight; the optimizer parameter
//    is reindexed; seeded moments are written into its state.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <memory>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "common/live_handles.hpp"
#include "common/options.hpp"
#include "common/sparse_entries.hpp"
#include "common/tensor.hpp"
#include "context.hpp"
#include "train/optimizer.hpp"
#include "train/sparse_set.hpp"

struct s2ft_spiel {
  s2ft::LiveHandle<s2ft::HandleKind::spiel> live;  // first: counted, and tagged while alive
  s2ft_device device{S2FT_DEVICE_CPU, 0};
  s2ft_optimizer *opt = nullptr;  // kept, not owned
  int64_t index = 0;              // the sparse parameter
  s2ft_spiel_options o{};
  int64_t rows = 0, cols = 0, k = 0;
  int32_t dtype = S2FT_F32;
  std::vector<int64_t> indices;  // the trained entries, ascending (the parameter's lines)
  std::vector<uint8_t> base;     // their base bytes, elem() each, in the same order

  // The accumulation window whose sums exist (-1: none), and its sums.
  int64_t window = -1;
  int64_t samples = 0;                    // observe calls in it
  std::vector<int64_t> candidates;        // AG: ascending
  s2ft::backend::Object candidate_set;    // AG: the backend's set of the candidates
  s2ft::backend::Object sums;             // AG: 2 * candidates; MA activations: rows + cols (doubles)

  int64_t steps = 0, reselections = 0, observations = 0, dense_gradients = 0;
  int64_t last_step = 0, last_target = 0, last_dropped = 0, last_regrown = 0;
  double last_rate = 0.0;
};

namespace s2ft {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::string num(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

void check_spiel_options(const s2ft_spiel_options &o) {
  check_options_version(o.version, S2FT_SPIEL_OPTIONS_VERSION, "s2ft_spiel_options_init");
  if (o.regrow != S2FT_SPIEL_AG && o.regrow != S2FT_SPIEL_MA)
    fail_arg("opts->regrow must be S2FT_SPIEL_AG or S2FT_SPIEL_MA, got " + std::to_string(o.regrow));
  if (o.reselect_interval < 1)
    fail_arg("opts->reselect_interval must be >= 1, got " + std::to_string(o.reselect_interval));
  if (o.accumulation_steps < 1 || o.accumulation_steps > o.reselect_interval)
    fail_arg("opts->accumulation_steps must be in [1, reselect_interval = " + std::to_string(o.reselect_interval) +
             "], got " + std::to_string(o.accumulation_steps));
  if (o.total_steps < 1)
    fail_arg("opts->total_steps must be >= 1 (the training run's optimizer steps), got " +
             std::to_string(o.total_steps));
  if (!(o.initial_rate >= 0.0 && o.initial_rate <= 1.0))
    fail_arg("opts->initial_rate must be in [0, 1], got " + num(o.initial_rate));
  if (o.decay != S2FT_SPIEL_DECAY_LINEAR && o.decay != S2FT_SPIEL_DECAY_COSINE)
    fail_arg("opts->decay must be S2FT_SPIEL_DECAY_LINEAR or S2FT_SPIEL_DECAY_COSINE, got " + std::to_string(o.decay));
  if (o.candidates < 0) fail_arg("opts->candidates must be >= 0 (0: the entry count), got " + std::to_string(o.candidates));
  if (o.ma_source != S2FT_SPIEL_MA_OPTIMIZER && o.ma_source != S2FT_SPIEL_MA_ACTIVATIONS)
    fail_arg("opts->ma_source must be S2FT_SPIEL_MA_OPTIMIZER or S2FT_SPIEL_MA_ACTIVATIONS, got " +
             std::to_string(o.ma_source));
  if (o.observations_per_step < 1)
    fail_arg("opts->observations_per_step must be >= 1, got " + std::to_string(o.observations_per_step));
}

// ---- the schedule -------------------------------------------------------------------

// The replacement rate after step t (t >= 1).
double rate_at(const s2ft_spiel_options &o, int64_t t) {
  if (t > o.total_steps) return 0.0;
  if (o.first_full != 0 && t == o.accumulation_steps) return 1.0;
  const double f = static_cast<double>(t) / static_cast<double>(o.total_steps);
  if (o.decay == S2FT_SPIEL_DECAY_COSINE) return o.initial_rate * (1.0 + std::cos(kPi * f)) / 2.0;
  return o.initial_rate * (1.0 - f);
}

bool is_reselection(const s2ft_spiel_options &o, int64_t t) {
  return t >= o.accumulation_steps && t <= o.total_steps &&
         (t - o.accumulation_steps) % o.reselect_interval == 0;
}

// The window (j) that step s (>= 1) belongs to, or -1: steps j*N + 1 ..
// j*N + M lead to the reselection after step j*N + M.
int64_t window_of(const s2ft_spiel_options &o, int64_t s) {
  const int64_t j = (s - 1) / o.reselect_interval;
  if ((s - 1) % o.reselect_interval >= o.accumulation_steps) return -1;
  if (j * o.reselect_interval + o.accumulation_steps > o.total_steps) return -1;
  return j;
}

// The first reselection step after `steps`, or 0.
int64_t next_reselection(const s2ft_spiel_options &o, int64_t steps) {
  const int64_t M = o.accumulation_steps, N = o.reselect_interval;
  const int64_t after = steps + 1;
  const int64_t j = after <= M ? 0 : (after - M + N - 1) / N;
  const int64_t t = M + j * N;
  return t <= o.total_steps ? t : 0;
}

// ---- selection on the host ----------------------------------------------------------------

// A scored entry; "better" is the larger score, then the lower flat index.
struct Scored {
  double score;
  int64_t flat;
};
inline bool better(const Scored &a, const Scored &b) {
  return a.score > b.score || (a.score == b.score && a.flat < b.flat);
}

// Keeps the `count` best entries pushed (in any order) in a heap whose top
// is the worst kept one: memory O(count).
class Best {
 public:
  explicit Best(int64_t count) : count_(static_cast<size_t>(count < 0 ? 0 : count)) {}
  void push(double score, int64_t flat) {
    const Scored s{std::isnan(score) ? -1.0 : score, flat};  // NaN never beats a number
    if (heap_.size() < count_) {
      heap_.push_back(s);
      std::push_heap(heap_.begin(), heap_.end(), better);
    } else if (count_ > 0 && better(s, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), better);
      heap_.back() = s;
      std::push_heap(heap_.begin(), heap_.end(), better);
    }
  }
  // The kept flat indices, ascending.
  std::vector<int64_t> flats() const {
    std::vector<int64_t> v;
    v.reserve(heap_.size());
    for (const Scored &s : heap_) v.push_back(s.flat);
    std::sort(v.begin(), v.end());
    return v;
  }

 private:
  size_t count_;
  std::vector<Scored> heap_;  // std heap under `better`: front() is the worst kept
};

bool contains(const std::vector<int64_t> &sorted, int64_t x) {
  return std::binary_search(sorted.begin(), sorted.end(), x);
}

// MA: the `count` entries (r, c) of largest R[r] * C[c] (ties to the lower
// flat index r * cols + c) for which skip(flat) is false, ascending; fewer
// when fewer remain. R and C are >= 0. Rows are walked in order of
// decreasing R, each along the columns in order of decreasing C (so each
// row's products never increase), merged by a heap of one cursor per row:
// O((rows + count + skipped) log rows), never rows * cols, except that all
// entries of one product value are taken as a group (to order ties by flat
// index), and zero products (the rest, once reached) by a scan in flat
// order.
template <typename Skip>
std::vector<int64_t> top_outer(const std::vector<double> &R, const std::vector<double> &C, int64_t count,
                               const Skip &skip) {
  const int64_t rows = static_cast<int64_t>(R.size()), cols = static_cast<int64_t>(C.size());
  std::vector<int64_t> ro(static_cast<size_t>(rows)), co(static_cast<size_t>(cols));
  for (int64_t i = 0; i < rows; ++i) ro[static_cast<size_t>(i)] = i;
  for (int64_t j = 0; j < cols; ++j) co[static_cast<size_t>(j)] = j;
  std::sort(ro.begin(), ro.end(), [&](int64_t a, int64_t b) { return R[a] > R[b] || (R[a] == R[b] && a < b); });
  std::sort(co.begin(), co.end(), [&](int64_t a, int64_t b) { return C[a] > C[b] || (C[a] == C[b] && a < b); });
  const auto product = [&](int64_t r, int64_t c) {
    const double p = R[static_cast<size_t>(r)] * C[static_cast<size_t>(c)];
    return std::isnan(p) ? 0.0 : p;  // inf * 0
  };
  struct Cursor {
    double p;
    int64_t flat, i, j;  // row position i in ro, column position j in co
  };
  const auto worse = [](const Cursor &a, const Cursor &b) { return a.p < b.p || (a.p == b.p && a.flat > b.flat); };
  std::priority_queue<Cursor, std::vector<Cursor>, decltype(worse)> heap(worse);
  const auto cursor = [&](int64_t i, int64_t j) {
    const int64_t r = ro[static_cast<size_t>(i)], c = co[static_cast<size_t>(j)];
    return Cursor{product(r, c), r * cols + c, i, j};
  };
  for (int64_t i = 0; i < rows && cols > 0; ++i) heap.push(cursor(i, 0));
  std::vector<int64_t> chosen, group;
  while (static_cast<int64_t>(chosen.size()) < count && !heap.empty()) {
    const double P = heap.top().p;
    if (!(P > 0.0)) {  // every remaining product is 0: the lowest flat indices
      for (int64_t f = 0; f < rows * cols && static_cast<int64_t>(chosen.size()) < count; ++f)
        if (!(product(f / cols, f % cols) > 0.0) && !skip(f)) chosen.push_back(f);
      break;
    }
    group.clear();
    while (!heap.empty() && heap.top().p == P) {
      const Cursor c = heap.top();
      heap.pop();
      if (!skip(c.flat)) group.push_back(c.flat);
      if (c.j + 1 < cols) heap.push(cursor(c.i, c.j + 1));
    }
    std::sort(group.begin(), group.end());
    const size_t take = std::min(group.size(), static_cast<size_t>(count) - chosen.size());
    chosen.insert(chosen.end(), group.begin(), group.begin() + static_cast<std::ptrdiff_t>(take));
  }
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

// ---- the weight's entries --------------------------------------------------------------

size_t elem_size(const s2ft_spiel &s) { return dtype_size(s.dtype); }

float decode(int32_t dtype, const uint8_t *p) {
  if (dtype == S2FT_F32) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return dtype == S2FT_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

std::vector<uint8_t> read_bytes(const s2ft_context &ctx, const Matrix &w, const std::vector<int64_t> &flat) {
  std::vector<uint8_t> bytes(flat.size() * w.elem());
  if (!flat.empty()) run(ctx, &backend::Ops::read_entries, w, flat, static_cast<void *>(bytes.data()));
  return bytes;
}

// The trained values of the current entries in f32: the optimizer's
// masters for 16-bit weights (what training holds before rounding, as the
// reference's f32 delta values), else the weight's.
std::vector<float> trained_values(const s2ft_spiel &s, const s2ft_context &ctx, const Matrix &w) {
  const OptimizerParam &p = s.opt->params[static_cast<size_t>(s.index)];
  if (p.has_master()) return read_param_state(*s.opt, s.index, backend::StateTensor::master);
  const std::vector<uint8_t> bytes = read_bytes(ctx, w, s.indices);
  std::vector<float> v(s.indices.size());
  for (size_t e = 0; e < v.size(); ++e) v[e] = decode(s.dtype, bytes.data() + e * 4);
  return v;
}

// ---- checks ----------------------------------------------------------------------------

s2ft_context &require_device_context(s2ft_context *ctx, const s2ft_device &device, const char *what) {
  s2ft_context &c = require_context(ctx);
  if (c.device.type != device.type || c.device.id != device.id)
    fail(S2FT_ERR_DEVICE, std::string("ctx is on ") + device_name(c.device) + " but " + what + " is on " +
                              device_name(device));
  return c;
}

// The parameter's weight as given by the caller: the same view it was registered with.
Matrix require_param_weight(const s2ft_tensor *weight, const OptimizerParam &p, const s2ft_device &device,
                            int64_t index) {
  require_not_null(weight, "weight");
  const Matrix W = check_matrix(weight, "weight", device);
  if (!same_view(W, p.weight))
    fail_arg("weight is not the weight of optimizer parameter " + std::to_string(index) +
             " (the same memory, dtype, shape and strides as given to s2ft_optimizer_add_sparse)");
  return W;
}

s2ft_spiel &require_spiel(s2ft_spiel *spiel) {
  s2ft_spiel &s = require_live(spiel, "spiel");
  require_live(s.opt, "the schedule's optimizer");
  if (s.index >= static_cast<int64_t>(s.opt->params.size()))
    fail(S2FT_ERR_STATE, "the schedule's optimizer no longer has parameter " + std::to_string(s.index));
  return s;
}

// ---- one reselection ----------------------------------------------------------------------

struct Choice {
  std::vector<int64_t> out;  // entries leaving, flat
  std::vector<int64_t> in;   // entries joining, flat ascending
  std::vector<double> s1, s2;  // AG: their window sums (aligned with `in`)
};

// The current entries in drop order: smallest |value - base| first, ties
// to the lower flat index (positions into s.indices).
std::vector<size_t> drop_order(const s2ft_spiel &s, const std::vector<float> &values) {
  const size_t k = s.indices.size();
  std::vector<double> mag(k);
  for (size_t e = 0; e < k; ++e) {
    const double d = std::fabs(static_cast<double>(values[e]) -
                               static_cast<double>(decode(s.dtype, s.base.data() + e * elem_size(s))));
    mag[e] = std::isnan(d) ? INFINITY : d;
  }
  std::vector<size_t> order(k);
  for (size_t e = 0; e < k; ++e) order[e] = e;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return mag[a] < mag[b]; });
  return order;
}

Choice choose(const s2ft_spiel &s, const s2ft_context &ctx, const Matrix &w, int64_t n,
              const std::vector<int64_t> &excluded) {
  Choice ch;
  const std::vector<size_t> order = drop_order(s, trained_values(s, ctx, w));
  std::vector<int64_t> outgoing;  // in drop order
  for (int64_t i = 0; i < n; ++i) outgoing.push_back(s.indices[order[static_cast<size_t>(i)]]);
  std::vector<int64_t> outgoing_sorted = outgoing;
  std::sort(outgoing_sorted.begin(), outgoing_sorted.end());
  const auto current = [&](int64_t f) { return contains(s.indices, f); };
  const auto remaining = [&](int64_t f) { return current(f) && !contains(outgoing_sorted, f); };

  if (s.o.regrow == S2FT_SPIEL_AG) {
    // Window sums of the candidates: S1 then S2.
    const int64_t C = static_cast<int64_t>(s.candidates.size());
    std::vector<double> sums(static_cast<size_t>(2 * C));
    run(ctx, &backend::Ops::statistics_read, static_cast<const void *>(s.sums.get()), int64_t{0}, 2 * C, sums.data());
    Best best(n);
    for (int64_t c = 0; c < C; ++c) {
      const int64_t f = s.candidates[static_cast<size_t>(c)];
      if (remaining(f) || contains(excluded, f)) continue;
      best.push(std::fabs(sums[static_cast<size_t>(c)]), f);
    }
    const std::vector<int64_t> incoming = best.flats();
    // An entry both dropped and regrown stays; the drop list (in drop
    // order) is cut to the entries that actually join.
    for (int64_t f : incoming)
      if (!current(f)) {
        ch.in.push_back(f);
        const size_t c = static_cast<size_t>(std::lower_bound(s.candidates.begin(), s.candidates.end(), f) -
                                             s.candidates.begin());
        ch.s1.push_back(sums[c]);
        ch.s2.push_back(sums[static_cast<size_t>(C) + c]);
      }
    for (int64_t f : outgoing)
      if (!std::binary_search(incoming.begin(), incoming.end(), f)) ch.out.push_back(f);
  } else {
    std::vector<double> R(static_cast<size_t>(s.rows)), Cc(static_cast<size_t>(s.cols));
    if (s.o.ma_source == S2FT_SPIEL_MA_OPTIMIZER) {
      const std::vector<float> r = read_param_state(*s.opt, s.index, backend::StateTensor::row_acc);
      const std::vector<float> c = read_param_state(*s.opt, s.index, backend::StateTensor::col_acc);
      for (size_t i = 0; i < R.size(); ++i) R[i] = r[i];
      for (size_t j = 0; j < Cc.size(); ++j) Cc[j] = c[j];
    } else {
      std::vector<double> v(static_cast<size_t>(s.rows + s.cols));
      run(ctx, &backend::Ops::statistics_read, static_cast<const void *>(s.sums.get()), int64_t{0}, s.rows + s.cols,
          v.data());
      std::copy(v.begin(), v.begin() + s.rows, R.begin());
      std::copy(v.begin() + s.rows, v.end(), Cc.begin());
    }
    for (double &x : R) x = x > 0.0 ? x : 0.0;  // NaN and negatives: no evidence
    for (double &x : Cc) x = x > 0.0 ? x : 0.0;
    ch.in = top_outer(R, Cc, n, [&](int64_t f) { return current(f) || contains(excluded, f); });
    ch.out = outgoing;
  }
  ch.out.resize(std::min(ch.out.size(), ch.in.size()));  // as many leave as join
  return ch;
}

// Moves the set: reindex (the only step that can refuse; it checks before
// changing anything), then the dropped entries' base bytes back into the
// weight and the regrown entries' seeded moments.
void apply(s2ft_spiel &s, const s2ft_context &ctx, const Matrix &w, const Choice &ch) {
  const size_t e = elem_size(s);
  std::vector<int64_t> out_sorted = ch.out;
  std::sort(out_sorted.begin(), out_sorted.end());
  const std::vector<uint8_t> new_base = read_bytes(ctx, w, ch.in);
  std::vector<int64_t> next;
  std::vector<uint8_t> next_base;
  std::vector<uint8_t> out_base;  // base bytes of the dropped entries, in out_sorted order
  next.reserve(s.indices.size());
  next_base.reserve(s.base.size());
  size_t a = 0, b = 0;
  while (a < s.indices.size() || b < ch.in.size()) {
    const bool take_old = b == ch.in.size() || (a < s.indices.size() && s.indices[a] < ch.in[b]);
    if (take_old) {
      const uint8_t *src = s.base.data() + a * e;
      if (std::binary_search(out_sorted.begin(), out_sorted.end(), s.indices[a])) {
        out_base.insert(out_base.end(), src, src + e);
      } else {
        next.push_back(s.indices[a]);
        next_base.insert(next_base.end(), src, src + e);
      }
      ++a;
    } else {
      next.push_back(ch.in[b]);
      next_base.insert(next_base.end(), new_base.data() + b * e, new_base.data() + (b + 1) * e);
      ++b;
    }
  }
  sparse_reindex(*s.opt, s.index, next, "the reselected entries");
  if (!out_sorted.empty()) run(ctx, &backend::Ops::write_entries, w, out_sorted, static_cast<const void *>(out_base.data()));

  const s2ft_optimizer_options &oo = s.opt->options;
  if (s.o.regrow == S2FT_SPIEL_AG && s.o.seed_moments != 0 && uses_adam_moments(oo) && !ch.in.empty()) {
    const OptimizerParam &p = s.opt->params[static_cast<size_t>(s.index)];
    const bool aged = uses_age(oo, p);
    const double samples = static_cast<double>(s.samples);
    const double a_steps = aged ? static_cast<double>(std::max<int64_t>(1, s.samples / s.o.observations_per_step))
                                : static_cast<double>(current_steps(*s.opt));
    const double c1 = 1.0 - std::pow(oo.beta1, a_steps), c2 = 1.0 - std::pow(oo.beta2, a_steps);
    std::vector<float> m = read_param_state(*s.opt, s.index, backend::StateTensor::m);
    std::vector<float> v = read_param_state(*s.opt, s.index, backend::StateTensor::v);
    std::vector<float> age;
    if (aged) age = read_param_state(*s.opt, s.index, backend::StateTensor::age);
    for (size_t i = 0; i < ch.in.size(); ++i) {
      const size_t pos = static_cast<size_t>(std::lower_bound(next.begin(), next.end(), ch.in[i]) - next.begin());
      m[pos] = static_cast<float>(ch.s1[i] / samples * c1);
      v[pos] = static_cast<float>(ch.s2[i] / samples * c2);
      if (aged) age[pos] = static_cast<float>(a_steps);
    }
    write_param_state(*s.opt, s.index, backend::StateTensor::m, m);
    write_param_state(*s.opt, s.index, backend::StateTensor::v, v);
    if (aged) write_param_state(*s.opt, s.index, backend::StateTensor::age, age);
  }
  s.indices = std::move(next);
  s.base = std::move(next_base);
}

void drop_window(s2ft_spiel &s) {
  s.window = -1;
  s.samples = 0;
  s.candidates.clear();
  s.candidate_set.reset();
  s.sums.reset();
}

// Needs the window's observe calls (AG, MA from activations).
bool needs_observations(const s2ft_spiel_options &o) {
  return o.regrow == S2FT_SPIEL_AG || o.ma_source == S2FT_SPIEL_MA_ACTIVATIONS;
}

}  // namespace
}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_spiel_options_init(s2ft_spiel_options *opts, uint32_t version) {
  return s2ft::guard("s2ft_spiel_options_init", [&] {
    s2ft::require_not_null(opts, "opts");
    s2ft::check_init_version(version, S2FT_SPIEL_OPTIONS_VERSION);
    *opts = s2ft_spiel_options{};
    opts->version = version;
    opts->regrow = S2FT_SPIEL_AG;
    opts->reselect_interval = 20;
    opts->accumulation_steps = 5;
    opts->total_steps = 0;
    opts->initial_rate = 0.2;
    opts->decay = S2FT_SPIEL_DECAY_LINEAR;
    opts->first_full = 1;
    opts->candidates = 0;
    opts->seed_moments = 1;
    opts->ma_source = S2FT_SPIEL_MA_OPTIMIZER;
    opts->observations_per_step = 1;
  });
}

S2FT_API s2ft_status s2ft_spiel_rate(const s2ft_spiel_options *opts, int64_t step, double *rate) {
  return s2ft::guard("s2ft_spiel_rate", [&] {
    s2ft::require_not_null(opts, "opts");
    s2ft::require_not_null(rate, "rate");
    s2ft::check_spiel_options(*opts);
    if (step < 1) s2ft::fail_arg("step must be >= 1 (steps count from 1), got " + std::to_string(step));
    *rate = s2ft::rate_at(*opts, step);
  });
}

S2FT_API s2ft_status s2ft_spiel_create(s2ft_context *ctx, s2ft_optimizer *opt, int64_t param_index,
                                       const s2ft_tensor *weight, const s2ft_spiel_options *opts, s2ft_spiel **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_spiel_create", [&] {
    using namespace s2ft;
    require_not_null(out, "out");
    require_live(opt, "opt");
    s2ft_context &c = require_device_context(ctx, opt->device, "the optimizer");
    require_not_null(opts, "opts");
    check_spiel_options(*opts);
    const OptimizerParam &p = sparse_param(*opt, param_index, "param_index");
    const Matrix W = require_param_weight(weight, p, c.device, param_index);
    other_sparse_entries(*opt, param_index, "a SpIEL schedule");  // refuses a slice of the same weight
    const int64_t size = W.rows * W.cols;
    if (opts->candidates > size)
      fail_arg("opts->candidates is " + std::to_string(opts->candidates) + " but the weight has only rows * cols = " +
               std::to_string(size) + " entries");
    if (opts->regrow == S2FT_SPIEL_MA && opts->ma_source == S2FT_SPIEL_MA_OPTIMIZER &&
        opt->options.kind != S2FT_OPTIMIZER_SM3)
      fail_arg("opts->ma_source S2FT_SPIEL_MA_OPTIMIZER reads the SM3 row and column accumulators, but the "
               "optimizer is not S2FT_OPTIMIZER_SM3 (use S2FT_SPIEL_MA_ACTIVATIONS)");
    auto s = std::make_unique<s2ft_spiel>();
    s->device = opt->device;
    s->opt = opt;
    s->index = param_index;
    s->o = *opts;
    s->rows = W.rows;
    s->cols = W.cols;
    s->dtype = W.dtype;
    s->indices = p.lines;
    s->k = static_cast<int64_t>(p.lines.size());
    s->base = read_bytes(c, W, s->indices);
    *out = s.release();
  });
}

S2FT_API void s2ft_spiel_destroy(s2ft_spiel *spiel) {
  if (s2ft::destroyable(spiel)) delete spiel;
}

S2FT_API s2ft_status s2ft_spiel_observe(s2ft_spiel *spiel, s2ft_context *ctx, const s2ft_tensor *x,
                                        const s2ft_tensor *dy) {
  return s2ft::guard("s2ft_spiel_observe", [&] {
    using namespace s2ft;
    s2ft_spiel &s = require_spiel(spiel);
    s2ft_context &c = require_device_context(ctx, s.device, "the schedule");
    const Matrix X = check_matrix(x, "x", c.device);
    const Matrix DY = check_matrix(dy, "dy", c.device);
    require_shape(X, "x", X.rows, s.cols);
    require_shape(DY, "dy", X.rows, s.rows);
    require_same_dtype(DY, "dy", X, "x");
    const int64_t j = window_of(s.o, s.steps + 1);
    if (j < 0 || !needs_observations(s.o)) return;
    if (s.window != j) {  // the window's first call: its sums, made before anything is kept
      std::vector<int64_t> candidates;
      backend::Object set, sums;
      if (s.o.regrow == S2FT_SPIEL_AG) {
        const int64_t size = s.rows * s.cols;
        const int64_t C = s.o.candidates > 0 ? s.o.candidates : std::min(s.k, size);
        {
          std::vector<float> dense(static_cast<size_t>(size));
          run(c, &backend::Ops::dense_gradient, X, DY, dense.data());
          ++s.dense_gradients;
          Best best(C);
          for (int64_t f = 0; f < size; ++f) best.push(std::fabs(static_cast<double>(dense[static_cast<size_t>(f)])), f);
          candidates = best.flats();
        }
        auto entries = std::make_shared<const SparseEntries>(make_sparse_entries(s.rows, s.cols, candidates));
        run(c, &backend::Ops::sparse_set_create, entries, &set);
        run(c, &backend::Ops::statistics_create, 2 * C, &sums);
      } else {
        run(c, &backend::Ops::statistics_create, s.rows + s.cols, &sums);
      }
      drop_window(s);
      s.window = j;
      s.candidates = std::move(candidates);
      s.candidate_set = std::move(set);
      s.sums = std::move(sums);
    }
    if (s.o.regrow == S2FT_SPIEL_AG) {
      run(c, &backend::Ops::sparse_gradient_sums, static_cast<const void *>(s.candidate_set.get()), X, DY,
          s.sums.get());
    } else {
      backend::UnitSums rows_dst{0, s.rows, 1, true, true}, cols_dst{s.rows, s.cols, 1, true, true};
      run(c, &backend::Ops::statistics_add_lines, s.sums.get(), rows_dst, DY);
      run(c, &backend::Ops::statistics_add_lines, s.sums.get(), cols_dst, X);
    }
    ++s.samples;
    ++s.observations;
  });
}

S2FT_API s2ft_status s2ft_spiel_step(s2ft_spiel *spiel, s2ft_context *ctx, s2ft_tensor *weight, int32_t *reselected) {
  if (reselected != nullptr) *reselected = 0;
  return s2ft::guard("s2ft_spiel_step", [&] {
    using namespace s2ft;
    s2ft_spiel &s = require_spiel(spiel);
    s2ft_context &c = require_device_context(ctx, s.device, "the schedule");
    const OptimizerParam &p = s.opt->params[static_cast<size_t>(s.index)];
    if (!p.sparse()) fail(S2FT_ERR_STATE, "optimizer parameter " + std::to_string(s.index) + " is no longer sparse");
    const Matrix W = require_param_weight(weight, p, c.device, s.index);
    if (p.lines != s.indices)
      fail(S2FT_ERR_STATE, "optimizer parameter " + std::to_string(s.index) +
                               " was reindexed outside the schedule (its entries are no longer the schedule's)");
    const int64_t t = s.steps + 1;
    if (!is_reselection(s.o, t)) {
      s.steps = t;
      if (s.window >= 0 && window_of(s.o, t + 1) != s.window) drop_window(s);  // a stale window
      return;
    }
    const double rate = rate_at(s.o, t);
    const int64_t n = std::min<int64_t>(s.k, static_cast<int64_t>(std::floor(rate * static_cast<double>(s.k))));
    const int64_t j = (t - s.o.accumulation_steps) / s.o.reselect_interval;
    Choice ch;
    if (n > 0) {
      if (needs_observations(s.o) && (s.window != j || s.samples == 0))
        fail(S2FT_ERR_STATE, "step " + std::to_string(t) + " reselects entries, but s2ft_spiel_observe was not called "
                             "during its accumulation window (steps " + std::to_string(t - s.o.accumulation_steps + 1) +
                             " to " + std::to_string(t) + ")");
      const std::vector<int64_t> excluded = other_sparse_entries(*s.opt, s.index, "a SpIEL schedule");
      ch = choose(s, c, W, n, excluded);
      if (!ch.in.empty()) apply(s, c, W, ch);
    }
    s.steps = t;
    ++s.reselections;
    s.last_step = t;
    s.last_rate = rate;
    s.last_target = n;
    s.last_dropped = static_cast<int64_t>(ch.out.size());
    s.last_regrown = static_cast<int64_t>(ch.in.size());
    drop_window(s);
    if (reselected != nullptr) *reselected = ch.in.empty() ? 0 : 1;
  });
}

S2FT_API s2ft_status s2ft_spiel_current_set(const s2ft_spiel *spiel, s2ft_context *ctx, s2ft_sparse_set **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_spiel_current_set", [&] {
    using namespace s2ft;
    require_not_null(out, "out");
    const s2ft_spiel &s = require_live(spiel, "spiel");
    s2ft_context &c = require_device_context(ctx, s.device, "the schedule");
    auto entries = std::make_shared<const SparseEntries>(make_sparse_entries(s.rows, s.cols, s.indices));
    auto set = std::make_unique<s2ft_sparse_set>();
    set->device = c.device;
    set->entries = entries;
    run(c, &backend::Ops::sparse_set_create, entries, &set->data);
    *out = set.release();
  });
}

S2FT_API s2ft_status s2ft_spiel_stats_get(const s2ft_spiel *spiel, s2ft_spiel_stats *out) {
  return s2ft::guard("s2ft_spiel_stats_get", [&] {
    using namespace s2ft;
    const s2ft_spiel &s = require_live(spiel, "spiel");
    require_not_null(out, "out");
    if (out->version != S2FT_SPIEL_STATS_VERSION)
      fail_arg("out->version is " + std::to_string(out->version) + "; set it to S2FT_SPIEL_STATS_VERSION (" +
               std::to_string(S2FT_SPIEL_STATS_VERSION) + ")");
    s2ft_spiel_stats r{};
    r.version = out->version;
    r.steps = s.steps;
    r.count = s.k;
    r.reselections = s.reselections;
    r.observations = s.observations;
    r.dense_gradients = s.dense_gradients;
    r.next_reselection = next_reselection(s.o, s.steps);
    r.last_step = s.last_step;
    r.last_rate = s.last_rate;
    r.last_target = s.last_target;
    r.last_dropped = s.last_dropped;
    r.last_regrown = s.last_regrown;
    *out = r;
  });
}

}  // extern "C"
