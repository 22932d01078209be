// The one interface between the core and a compute backend: a table of
// operations (Ops) per backend. A public function validates its arguments,
// plans the work, and makes one call through the table of its context's
// backend; it never asks which device it is on.
//
// The CPU backend (src/backend/cpu/) is compiled into libs2ft.so; the CUDA
// backend (kernels/) is the separate library libs2ft_cuda.so, which the
// loader (src/backend/loader.cpp) opens with dlopen the first time a CUDA
// context is created or CUDA devices are counted. Both sides are built from
// these headers by the same build, so C++ types cross the table; no
// exception does: every operation returns a status, and on failure the
// backend's last_error() holds the message (see entry.hpp).
//
// The operations receive arguments the core has already checked (shapes,
// dtypes, devices, aliasing): a backend only checks what the core cannot
// know (device pointers, its own limits) and reports its own failures.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/tensor.hpp"
#include "s2ft/s2ft.h"

struct s2ft_adapter;
struct s2ft_selection;

namespace s2ft {

struct AdapterEntry;    // adapter/adapter.hpp
struct SparseEntry;     // adapter/adapter.hpp
struct LowRankEntry;    // adapter/adapter.hpp
struct HostCsr;         // adapter/csr.hpp
struct Lines;           // train/slice.hpp
struct OptimizerParam;  // train/optimizer.hpp
struct SparseEntries;   // common/sparse_entries.hpp

enum class Op { N, T };  // use a matrix as stored, or transposed

namespace backend {

// Bumped whenever Ops or any type it passes changes. A module built for
// another value is refused by the loader.
constexpr uint32_t kAbiVersion = 4;

// A backend's state for one s2ft_context: its device binding, library
// handles, stream and workspace. Each backend derives its own.
struct Instance {
 protected:
  Instance() = default;
  ~Instance() = default;
};

// An object a backend made and the core keeps without knowing its type
// (statistics sums, optimizer state, a model's saved lines, a CSR delta).
// Freed by the deleter the backend gave it.
using Object = std::shared_ptr<void>;

// ---- what the operations work on ---------------------------------------------------

// One weight to co-permute in place (s2ft_permute): its lines (columns when
// by_columns, else rows) move in units of `width` consecutive lines;
// order[p] is the unit that goes to position p.
//   FORWARD  new line p*width + j        <- old line order[p]*width + j
//   INVERSE  new line order[p]*width + j <- old line p*width + j
// Units that order does not name stay; element bytes move, never converted.
struct PermuteJob {
  Matrix m;
  bool by_columns = false;
  const std::vector<int64_t> *order = nullptr;
  int64_t width = 1;
};

// Where one statistics record's per-unit sums live in a statistics object:
// sums[offset, offset + units), a unit being `width` consecutive lines
// (columns when by_columns, else rows). With `accumulate` new sums are added
// to the record's, otherwise they replace them.
struct UnitSums {
  int64_t offset = 0, units = 0, width = 1;
  bool by_columns = true;
  bool accumulate = false;
};

// An optimizer parameter's state tensors, in the order of the state file.
// m, v, momentum, master and age have one value per parameter element;
// row_acc and col_acc (SM3) one per row and per column of the parameter's
// matrix (OptimizerParam::state_size).
enum class StateTensor { m = 0, v = 1, momentum = 2, master = 3, age = 4, row_acc = 5, col_acc = 6 };
constexpr int kStateTensors = 7;

// What an optimizer step tells the host.
struct StepReport {
  bool known = false;    // the fields below are filled (else the step was queued unseen)
  double norm = 0.0;     // global gradient norm before clipping
  int64_t bad = -1;      // first gradient whose sum of squares is not finite
  bool applied = false;  // the norm was finite and the update happened (or is queued)
  int64_t steps = 0;     // the step count after this step
};

// One present weight of a model (s2ft_model_create): any of the seven.
struct TargetWeight {
  int32_t layer = 0, target = 0;  // target: the weight id (S2FT_WEIGHT_*; 0..3 are the targets)
  Matrix w;
  int32_t axis = S2FT_AXIS_COLUMNS;  // its lines: columns (O, DOWN) or rows (V, UP, and Q, K, GATE)
  // Where the base-order rows and columns sit in w (base index -> position;
  // empty: the identity), for the whole-weight base fingerprint of sparse
  // entries: FNV-1a (common/fingerprint.hpp mix_u64) over the fingerprints
  // of the base rows r = 0.., row r being w's row row_map[r] read at columns
  // col_map[0], col_map[1], ...
  std::vector<int64_t> row_map, col_map;
};

// One (layer, target) of an adapter transition (apply, remove, switch) from
// the applied adapter, whose lines sit at *old_positions, to the new one
// (entry; NULL when it has none here), whose line j goes to
// (*new_positions)[j].
struct TransitionStep {
  int32_t layer = 0, target = 0;
  Matrix w;
  bool by_columns = true;   // lines are columns (O, DOWN) or rows (V, UP)
  int64_t line_length = 0;  // elements per line
  const std::vector<int64_t> *old_positions = nullptr;
  const std::vector<int64_t> *new_positions = nullptr;
  const AdapterEntry *entry = nullptr;
  double max_abs_delta = 0.0;  // the largest |delta| of entry (merge_range.hpp's fast test)
};

// One (layer, weight) of a transition's sparse entries, planned by the
// core: from the applied adapter's, whose elements sit at *old_positions
// (flat positions r * cols + c in w as stored, in the order of their
// record), to the new adapter's `entry` (NULL when it has none here), whose
// element j goes to (*new_positions)[j]. The base value W0 of a new element
// comes from the old sparse record (from_old[j] >= 0), from the saved line
// of the structured step steps[lines_step] (from_line[j] >= 0: the index of
// the line in that step's *old_positions), or else from the weight.
struct SparseStep {
  int32_t layer = 0, weight = 0;
  Matrix w;
  const std::vector<int64_t> *old_positions = nullptr;
  const std::vector<int64_t> *new_positions = nullptr;
  const SparseEntry *entry = nullptr;
  std::vector<int64_t> from_old, from_line;  // per new element, or -1
  // Old elements the new entry does not hold, by index in the old record:
  // they get W0 back (before the structured steps run, so that lines read
  // base values; those that lie on a new line are then overwritten by it).
  std::vector<int64_t> restore;
  // Old elements that lie on a line of the new structured entry, as
  // (index in the old record, line j of the new entry, element i along the
  // line): where a backend that gathers the lines' W0 from the weight first
  // must take it from the old sparse record instead.
  std::vector<std::array<int64_t, 3>> onto_lines;
  int64_t lines_step = -1;            // the structured step of the same (layer, weight), or -1
  double max_abs_delta = 0.0;         // the largest |delta| of entry
  bool check_fingerprint = false;     // compare entry->fingerprint with the base weight's
};

// One (layer, weight) of a transition where the applied adapter (old_entry
// at old_scale) or the new one (entry) has a low-rank entry; an adapter
// with one there has no lines or sparse entries there. The backend saves
// the whole base weight W0 when an entry first covers it, writes, for base
// row r and column c (stored at the model's permuted position),
//   W[r, c] = round(double(W0[r, c]) + scale * sum_k double(b[r, k]) * double(a[k, c]))
// rounded once, and restores W0 (memcpy) when no entry covers it any more.
// lines_step / sparse_step: the structured / sparse step of the same
// (layer, weight) (the old adapter's lines or elements, restored by that
// step), or -1; the base W0 of a weight the old adapter did not cover by a
// low-rank entry is the weight with those put back.
struct LowRankStep {
  int32_t layer = 0, weight = 0;
  Matrix w;
  const LowRankEntry *old_entry = nullptr;  // the applied adapter's (NULL: none)
  double old_scale = 0.0;
  const LowRankEntry *entry = nullptr;      // the new adapter's (NULL: none)
  // Where base row r and column c sit in w (the model's permutation; empty: the identity).
  const std::vector<int64_t> *row_map = nullptr, *col_map = nullptr;
  int64_t lines_step = -1, sparse_step = -1;
  bool check_fingerprint = false;           // compare entry->fingerprint with the base weight's
};

// Why a transition was refused before anything was written, and where:
// line `line` of steps[step].entry, or with `sparse` element `line` of
// sparse[step].entry (line -1: the whole-weight fingerprint), or with
// `low_rank` base row `line` of low_rank[step].entry (-1: the fingerprint).
// step < 0: not refused.
struct Refusal {
  enum Kind { kFingerprint, kOverflow };  // the base line differs / the merge could overflow
  Kind kind = kFingerprint;
  int64_t step = -1, line = -1;
  double max_abs_w0 = 0.0, max_abs_delta = 0.0;  // kOverflow: the bound's terms (merge_range.hpp)
  bool sparse = false, low_rank = false;
};

// One adapter of a mixed batch as the core resolved it (at least one of
// entry and sparse is set).
struct MixedAdapter {
  const s2ft_adapter *adapter = nullptr;
  const AdapterEntry *entry = nullptr;              // its (layer, target) entry (NULL: none)
  const std::vector<int64_t> *positions = nullptr;  // the entry's lines as positions in w
  float scale = 1.0f;
  const SparseEntry *sparse = nullptr;                     // its sparse entries on (layer, weight) (NULL: none)
  const std::vector<int64_t> *sparse_positions = nullptr;  // their flat positions r * cols + c in w
};

// Consecutive rows [row, row + rows) of x and y that use adapters[adapter].
struct MixedGroup {
  int64_t row = 0, rows = 0;
  int32_t adapter = 0;
};

struct MixedCall {
  int32_t layer = 0, target = 0;
  bool columns = true;                   // O, DOWN (else V, UP)
  const s2ft_selection *perm = nullptr;  // NULL: w in base order
  int32_t delta_path = 0;                // S2FT_DELTA_PATH_*
};

// What s2ft_lift_select asks of a backend: the rank-r approximation W_r of
// a weight and the k entries of largest (or smallest) |W_r|.
struct LiftPlan {
  int64_t rank = 1;            // r, in [1, min(rows, cols)]
  int64_t count = 1;           // k, in [1, rows * cols]
  bool largest = true;         // else the smallest
  bool randomized = false;     // randomized SVD (else an exact one)
  int64_t oversampling = 10;   // randomized: p (sketch width r + p, capped at min(rows, cols))
  int64_t power_iterations = 2;  // randomized: q
  uint64_t seed = 0;           // randomized: the sketch's generator (common/rng.hpp)
};

// A SORSA layer's operands (s2ft_sorsa_forward/backward), checked by the
// core: the residual w [out, in] in the activations' dtype, and the f32
// factors u [out, r], s [1, r], vt [r, in].
struct SorsaFactors {
  Matrix w, u, s, vt;
};

// Their gradients, f32 and shaped as u, s, vt.
struct SorsaGrads {
  Matrix du, ds, dvt;
};

// What s2ft_sorsa_regularizer(_step) asks: with E_U = u^T u - I and
// E_V = vt vt^T - I, the norms n_U = ||E_U||_F, n_V = ||E_V||_F, and
// du (+)= c_U u E_U, dvt (+)= c_V E_V vt where c = gamma * 4 (squared) or
// gamma * 2 / n (unsquared; 0 when n is 0). With `step`, du and dvt are u
// and vt themselves (gamma = -rate, accumulating): every product reads the
// factors as they were before the call.
struct SorsaRegularizer {
  double gamma = 0.0;
  bool squared = true;
  bool accumulate = false;
  bool step = false;
};

// ---- the table ---------------------------------------------------------------------

// Capability bits (Ops::capabilities).
constexpr uint32_t kCapSparseDeltaPath = 1u << 0;  // S2FT_DELTA_PATH_SPARSE exists

// Every operation returns S2FT_OK or an error status with last_error() set.
// "Queued" means the work may still run on the device when the call
// returns; "synchronising" that the call waits for the device.
struct Ops {
  uint32_t abi_version = kAbiVersion;
  const char *name = nullptr;  // "cpu", "cuda"
  uint32_t capabilities = 0;
  // The message of this thread's last failed operation.
  const char *(*last_error)() = nullptr;

  // ---- devices and contexts
  // The number of usable devices; fails (S2FT_ERR_UNSUPPORTED) with the
  // reason when the driver or runtime cannot be used.
  s2ft_status (*device_count)(int32_t *out) = nullptr;
  // Binds a new instance to device `device_id` (num_threads: 0 = default).
  s2ft_status (*create)(int32_t device_id, int32_t num_threads, Instance **out) = nullptr;
  // Waits for the instance's queued work and frees it (NULL: nothing).
  void (*destroy)(Instance *inst) = nullptr;
  s2ft_status (*set_stream)(Instance *inst, void *stream) = nullptr;
  s2ft_status (*stream)(Instance *inst, void **out) = nullptr;
  s2ft_status (*set_workspace)(Instance *inst, void *ptr, size_t bytes) = nullptr;
  s2ft_status (*workspace_needed)(Instance *inst, size_t *out) = nullptr;
  s2ft_status (*synchronize)(Instance *inst) = nullptr;
  // Fails (S2FT_ERR_DEVICE) unless ptr is memory of device `device_id`.
  s2ft_status (*check_pointer)(int32_t device_id, const void *ptr, const char *name) = nullptr;

  // ---- partial training (s2ft_forward_partial, s2ft_backward_partial)
  // y = x W^T; x_saved (may be NULL) = x[:, S] (columns) or x (rows), bytes moved.
  s2ft_status (*forward_partial)(Instance *inst, const Lines &lines, const Matrix &x, const Matrix &w,
                                 const Matrix &y, const Matrix *x_saved) = nullptr;
  // dx (may be NULL) = dy W; columns: dw = dy^T x_in; rows: dw = dy[:, S]^T x_in.
  s2ft_status (*backward_partial)(Instance *inst, const Lines &lines, const Matrix &w, const Matrix &x_in,
                                  const Matrix &dy, const Matrix *dx, const Matrix &dw, bool accumulate_dx,
                                  bool accumulate_dw) = nullptr;

  // ---- co-permutation (s2ft_permute); bit-exact, INVERSE undoes FORWARD
  s2ft_status (*permute)(Instance *inst, const std::vector<PermuteJob> &jobs, bool forward) = nullptr;

  // ---- calibration statistics: `size` doubles, zeroed
  s2ft_status (*statistics_create)(Instance *inst, int64_t size, Object *out) = nullptr;
  // sums[u] (+)= sum of m[i, j]^2 over the lines of unit u (double).
  s2ft_status (*statistics_add_lines)(Instance *inst, void *sums, const UnitSums &dst, const Matrix &m) = nullptr;
  // The same over dW = dy^T x ([out, in]) for x [T, in], dy [T, out].
  s2ft_status (*statistics_add_gradient)(Instance *inst, void *sums, const UnitSums &dst, const Matrix &x,
                                         const Matrix &dy) = nullptr;
  // Copies sums[begin, begin + count) to host (synchronising).
  s2ft_status (*statistics_read)(Instance *inst, const void *sums, int64_t begin, int64_t count,
                                 double *host) = nullptr;

  // ---- the optimizer (AdamW, SGD) on slices
  // The optimizer's step counter, at 0.
  s2ft_status (*optimizer_create)(Instance *inst, Object *out) = nullptr;
  // Parameter p's state: moments/momentum at zero when used, the f32 master
  // from the weight's slice for 16-bit weights.
  s2ft_status (*optimizer_add_param)(Instance *inst, const OptimizerParam &p, const s2ft_optimizer_options &o,
                                     Object *out) = nullptr;
  // One step over all parameters (grads: the slice shapes). A non-finite
  // global norm changes nothing. With `report`, or on a backend that always
  // knows, *out is filled (known = true); otherwise the step may be queued
  // unseen and the device counts it only if the norm was finite.
  s2ft_status (*optimizer_step)(Instance *inst, void *state, const std::vector<OptimizerParam> &params,
                                const std::vector<Matrix> &grads, const s2ft_optimizer_options &o, double lr,
                                int64_t assumed_steps, bool report, StepReport *out) = nullptr;
  // The step counter (synchronising), and setting it.
  s2ft_status (*optimizer_steps)(Instance *inst, const void *state, int64_t *out) = nullptr;
  s2ft_status (*optimizer_set_steps)(Instance *inst, void *state, int64_t steps) = nullptr;
  // A sparse parameter moved to a new set (s2ft_optimizer_sparse_reindex):
  // `next` is `prev` with new lines (flat indices), cols and no state; its
  // state is made in *out: entry e takes prev's m, v, momentum, age and
  // master at source[e] when source[e] >= 0, else zeros (the master from
  // the weight). SM3 accumulators (per weight row and column) are kept.
  s2ft_status (*optimizer_reindex)(Instance *inst, const OptimizerParam &prev, const OptimizerParam &next,
                                   const std::vector<int64_t> &source, const s2ft_optimizer_options &o,
                                   Object *out) = nullptr;
  // A state tensor of a parameter (p.state_size(which) floats) to host, and back.
  s2ft_status (*optimizer_read_state)(Instance *inst, const OptimizerParam &p, StateTensor which, float *host,
                                      size_t count) = nullptr;
  s2ft_status (*optimizer_write_state)(Instance *inst, const OptimizerParam &p, StateTensor which,
                                       const float *host, size_t count) = nullptr;
  // Writes p's master slice, rounded, into the weight (nothing for f32).
  s2ft_status (*optimizer_write_master)(Instance *inst, const OptimizerParam &p) = nullptr;

  // ---- models and adapter transitions (s2ft_model_*, s2ft_adapter_apply/remove/switch)
  s2ft_status (*model_create)(Instance *inst, const s2ft_model_shape &shape, const std::vector<TargetWeight> &weights,
                              Object *out) = nullptr;
  // Unless `force`, compares the new lines' base fingerprints with the
  // entries'; refuses a line whose merge could overflow the weight's dtype
  // (merge_range.hpp), forced or not. A refusal sets *refusal and writes
  // nothing. Otherwise,
  // for every step in one pass over the union of old and new lines
  // (W0 = the saved base bytes where the line is displaced now, else the
  // weight's): a line only in the old set gets W0 back; new line j at p
  // gets W[p] = round(double(W0) + scale * double(delta[j])), rounded once
  // to the weight's dtype, and W0 is saved for it. Fails before writing
  // anything, or not at all.
  // The sparse steps the same, element by element (SparseStep says where
  // each W0 is), checked with the lines before anything is written: a
  // sparse step with check_fingerprint compares the entry's fingerprint
  // with the whole base weight's (TargetWeight), and an element's overflow
  // bound is max|W0| over its row (finite values) + |scale * delta|. The
  // writes go: sparse restores, the lines, the new sparse elements.
  s2ft_status (*model_transition)(Instance *inst, void *model, const std::vector<TransitionStep> &steps,
                                  const std::vector<SparseStep> &sparse, const std::vector<LowRankStep> &low_rank,
                                  const s2ft_adapter *adapter, double scale,
                                  bool force, Refusal *refusal) = nullptr;
  // Makes the instance's device copy of an adapter (nothing on the CPU).
  s2ft_status (*adapter_upload)(Instance *inst, const s2ft_adapter &adapter) = nullptr;
  // y = x w^T, then for each group y_R += scale * (adapter term).
  s2ft_status (*forward_mixed)(Instance *inst, const MixedCall &call, const Matrix &x, const Matrix &w,
                               const std::vector<MixedAdapter> &adapters, const std::vector<MixedGroup> &groups,
                               const Matrix &y) = nullptr;

  // ---- sparse deltas (s2ft_sparse_delta_*): a validated CSR, taken over
  s2ft_status (*csr_create)(Instance *inst, HostCsr *csr, Object *out) = nullptr;
  // y += scale * x D^T.
  s2ft_status (*csr_forward)(Instance *inst, const void *csr, float scale, const Matrix &x, const Matrix &y) = nullptr;

  // ---- unstructured sparse training (s2ft_sparse_set_*, s2ft_backward_sparse)
  // The backend's copy of a validated set (sorted flat indices, row offsets).
  s2ft_status (*sparse_set_create)(Instance *inst, const std::shared_ptr<const SparseEntries> &entries,
                                   Object *out) = nullptr;
  // dx (may be NULL) = dy W (+ dx); grad[0, n] (+)= sum_t dy[t, r_n] x[t, c_n]
  // for the set's entries (SDDMM), accumulated in f32 or wider. x [T, in],
  // dy [T, out], w [out, in] (NULL iff dx is NULL), grad f32 [1, count].
  s2ft_status (*backward_sparse)(Instance *inst, const void *set, const Matrix &x, const Matrix &dy, const Matrix *w,
                                 const Matrix *dx, const Matrix &grad, bool accumulate_dx,
                                 bool accumulate_grad) = nullptr;

  // ---- LIFT (s2ft_lift_select): the plan's k flat indices, ascending
  s2ft_status (*lift_select)(Instance *inst, const Matrix &w, const LiftPlan &plan,
                             std::vector<int64_t> *indices) = nullptr;

  // ---- SpIEL (s2ft_spiel_*)
  // dW = dy^T x ([out, in] f32, compact row-major) into host memory `host`
  // for x [T, in], dy [T, out] (synchronising): the one dense weight
  // gradient the library forms (SpIEL-AG, once per accumulation window).
  s2ft_status (*dense_gradient)(Instance *inst, const Matrix &x, const Matrix &dy, float *host) = nullptr;
  // For the set's SDDMM gradient g (as backward_sparse): sums[n] += g[n]
  // and sums[count + n] += g[n]^2 in double, `sums` a statistics object of
  // at least 2 * count values. Queued.
  s2ft_status (*sparse_gradient_sums)(Instance *inst, const void *set, const Matrix &x, const Matrix &dy,
                                      void *sums) = nullptr;
  // The raw bytes of w's elements at flat indices n = r * w.cols + c, in
  // the order given, to host (elem() bytes each; synchronising), and back
  // into w (queued; `host` may be reused when the call returns).
  s2ft_status (*read_entries)(Instance *inst, const Matrix &w, const std::vector<int64_t> &flat,
                              void *host) = nullptr;
  s2ft_status (*write_entries)(Instance *inst, const Matrix &w, const std::vector<int64_t> &flat,
                               const void *host) = nullptr;

  // ---- SORSA (s2ft_sorsa_*) and LIFT's score for S2FT (s2ft_statistics_add_principal)
  // The thin SVD of w: u, s, vt (f32) get the top u.cols triplets (signs as
  // s2ft.h says), w the residual w - u diag(s) vt (double, rounded once).
  s2ft_status (*sorsa_init)(Instance *inst, const Matrix &w, const Matrix &u, const Matrix &s,
                            const Matrix &vt) = nullptr;
  // y = x f.w^T + ((x f.vt^T) * f.s) f.u^T; h_saved (may be NULL, f32 [T, r]) = x f.vt^T.
  s2ft_status (*sorsa_forward)(Instance *inst, const SorsaFactors &f, const Matrix &x, const Matrix &y,
                               const Matrix *h_saved) = nullptr;
  // With g = dy u and h = h_saved (or x vt^T when NULL): du = dy^T (h * s),
  // ds = colsum(g * h), dvt = (g * s)^T x, dx (may be NULL) = dy w + (g * s) vt.
  s2ft_status (*sorsa_backward)(Instance *inst, const SorsaFactors &f, const Matrix &x, const Matrix *h_saved,
                                const Matrix &dy, const Matrix *dx, const SorsaGrads &g, bool accumulate_dx,
                                bool accumulate_grads) = nullptr;
  // The norms (n_U, n_V) to *norms (may be NULL: then CUDA does not
  // synchronise) and the gradients into du, dvt (either may be NULL).
  s2ft_status (*sorsa_regularizer)(Instance *inst, const Matrix &u, const Matrix &vt, const SorsaRegularizer &plan,
                                   const Matrix *du, const Matrix *dvt, double norms[2]) = nullptr;
  // The squared norms of the lines (columns when by_columns, else rows) of
  // w's rank-`rank` truncated SVD, to host (synchronising).
  s2ft_status (*principal_line_norms)(Instance *inst, const Matrix &w, int64_t rank, bool by_columns,
                                      std::vector<double> *out) = nullptr;
};

// Throws Error(status, ops.last_error()) unless status is S2FT_OK.
void check(const Ops &ops, s2ft_status status);

// ---- backend modules -------------------------------------------------------------

// What a module's entry point returns. Its layout never changes, so a
// loader can read it from a module of any version and say what is wrong.
struct ModuleInfo {
  uint32_t abi_version = kAbiVersion;
  const char *library_version = nullptr;  // the s2ft_version_string() it was built as
  const Ops *ops = nullptr;
};

// The one symbol a backend module exports: extern "C" const ModuleInfo *NAME(void).
constexpr const char *kModuleEntry = "s2ft_backend_module_v1";
using ModuleEntryFn = const ModuleInfo *(*)();

}  // namespace backend
}  // namespace s2ft
