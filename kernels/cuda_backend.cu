// The CUDA backend's operation table and the module's one entry point
// (s2ft_backend_module_v1), which libs2ft.so finds with dlsym after loading
// libs2ft_cuda.so. Each table entry adapts the core's arguments to the
// kernels' functions; backend/entry.hpp turns their exceptions into a status
// and this module's last-error message.
#include <array>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "adapter/adapter.hpp"
#include "adapter/csr.hpp"
#include "backend/backend.hpp"
#include "backend/entry.hpp"
#include "backend/merge_range.hpp"
#include "common/fingerprint.hpp"
#include "common/version.hpp"
#include "cuda_adapter_mirror.hpp"
#include "cuda_forward_mixed.hpp"
#include "cuda_model.hpp"
#include "cuda_optimizer.hpp"
#include "cuda_partial.hpp"
#include "cuda_permute.hpp"
#include "cuda_runtime.cuh"
#include "cuda_sorsa.hpp"
#include "cuda_sparse.hpp"
#include "cuda_sparse_backward.hpp"
#include "cuda_spiel.hpp"
#include "cuda_statistics.hpp"
#include "cuda_svd.hpp"
#include "train/optimizer.hpp"

namespace s2ft {
namespace cuda {
namespace {

Context &ctx_of(backend::Instance *inst) { return *static_cast<Context *>(inst); }

// ---- devices and contexts ----------------------------------------------------------

void count_devices(int32_t *out) {
  std::string why;
  const int n = device_count(&why);
  if (n < 0) fail(S2FT_ERR_UNSUPPORTED, "no usable CUDA runtime or driver (" + why + ")");
  *out = n;
}

void create(int32_t device_id, int32_t, backend::Instance **out) { *out = create_context(device_id).release(); }

void destroy(backend::Instance *inst) noexcept { ContextDeleter()(static_cast<Context *>(inst)); }

void set_stream_op(backend::Instance *inst, void *s) { set_stream(ctx_of(inst), s); }
void stream_op(backend::Instance *inst, void **out) { *out = stream(ctx_of(inst)); }
void set_workspace_op(backend::Instance *inst, void *p, size_t bytes) { set_workspace(ctx_of(inst), p, bytes); }
void workspace_needed(backend::Instance *inst, size_t *out) { *out = workspace_high_water(ctx_of(inst)); }
void synchronize_op(backend::Instance *inst) { synchronize(ctx_of(inst)); }
void check_pointer(int32_t device_id, const void *ptr, const char *name) {
  require_device_pointer(device_id, ptr, name);
}

// ---- partial training and permutation ----------------------------------------------------

void forward_partial_op(backend::Instance *inst, const Lines &lines, const Matrix &x, const Matrix &w,
                        const Matrix &y, const Matrix *x_saved) {
  forward_partial(ctx_of(inst), lines, x, w, y, x_saved);
}

void backward_partial_op(backend::Instance *inst, const Lines &lines, const Matrix &w, const Matrix &x_in,
                         const Matrix &dy, const Matrix *dx, const Matrix &dw, bool accumulate_dx,
                         bool accumulate_dw) {
  backward_partial(ctx_of(inst), lines, w, x_in, dy, dx, dw, accumulate_dx, accumulate_dw);
}

void permute_op(backend::Instance *inst, const std::vector<PermuteJob> &jobs, bool forward) {
  permute(ctx_of(inst), jobs, forward);
}

// ---- statistics ----------------------------------------------------------------------------

void statistics_create(backend::Instance *inst, int64_t size, backend::Object *out) {
  *out = create_statistics_arena(ctx_of(inst), size);
}

void statistics_add_lines(backend::Instance *inst, void *sums, const UnitSums &dst, const Matrix &m) {
  add_line_squares(ctx_of(inst), *static_cast<StatisticsArena *>(sums), dst, m);
}

void statistics_add_gradient(backend::Instance *inst, void *sums, const UnitSums &dst, const Matrix &x,
                             const Matrix &dy) {
  add_gradient_squares(ctx_of(inst), *static_cast<StatisticsArena *>(sums), dst, x, dy);
}

void statistics_read(backend::Instance *inst, const void *sums, int64_t begin, int64_t count, double *host) {
  download_sums(ctx_of(inst), *static_cast<const StatisticsArena *>(sums), begin, count, host);
}

// ---- the optimizer ---------------------------------------------------------------------------

ParamDeviceState &param_state(const OptimizerParam &p) { return *static_cast<ParamDeviceState *>(p.state.get()); }

void optimizer_create(backend::Instance *inst, backend::Object *out) { *out = create_optimizer_state(ctx_of(inst)); }

void optimizer_add_param(backend::Instance *inst, const OptimizerParam &p, const s2ft_optimizer_options &o,
                         backend::Object *out) {
  *out = create_param_state(ctx_of(inst), p, o);
}

void optimizer_step_op(backend::Instance *inst, void *state, const std::vector<OptimizerParam> &params,
                       const std::vector<Matrix> &grads, const s2ft_optimizer_options &o, double lr,
                       int64_t assumed_steps, bool report, StepReport *out) {
  optimizer_step(ctx_of(inst), *static_cast<OptimizerDeviceState *>(state), params, grads, o, lr, assumed_steps,
                 report, out);
  out->known = report;  // without a report the device alone knows whether the step was applied
}

void optimizer_steps(backend::Instance *inst, const void *state, int64_t *out) {
  *out = download_steps(ctx_of(inst), *static_cast<const OptimizerDeviceState *>(state));
}

void optimizer_set_steps(backend::Instance *inst, void *state, int64_t steps) {
  upload_steps(ctx_of(inst), *static_cast<OptimizerDeviceState *>(state), steps);
}

void optimizer_reindex(backend::Instance *inst, const OptimizerParam &prev, const OptimizerParam &next,
                       const std::vector<int64_t> &source, const s2ft_optimizer_options &o, backend::Object *out) {
  *out = reindex_param_state(ctx_of(inst), prev, next, source, o);
}

void optimizer_read_state(backend::Instance *inst, const OptimizerParam &p, StateTensor which, float *host,
                          size_t count) {
  download_state(ctx_of(inst), param_state(p), which, host, count);
}

void optimizer_write_state(backend::Instance *inst, const OptimizerParam &p, StateTensor which, const float *host,
                           size_t count) {
  upload_state(ctx_of(inst), param_state(p), which, host, count);
}

void optimizer_write_master(backend::Instance *inst, const OptimizerParam &p) {
  write_master_to_weight(ctx_of(inst), p);
}

// ---- models and adapters ------------------------------------------------------------------

// A model on the device: the base fingerprint of every line of every
// present target weight, by position, taken at create (the base bytes of a
// line never change while the model lives, since remove restores them
// exactly), so apply and switch check fingerprints without reading the
// device; per present weight (any of the seven) its whole-weight base
// fingerprint and the largest finite |W| of each stored row (sparse
// entries); and the device records of displaced lines and elements.
struct DeviceModel {
  std::vector<std::array<std::vector<uint64_t>, S2FT_NUM_TARGETS>> base_fingerprints;  // n_layers
  std::vector<std::array<std::vector<float>, S2FT_NUM_TARGETS>> base_max_abs;          // per line, finite values
  std::vector<std::array<uint64_t, S2FT_NUM_WEIGHTS>> weight_fingerprint;              // n_layers
  std::vector<std::array<std::vector<float>, S2FT_NUM_WEIGHTS>> row_max_abs;           // per stored row
  std::shared_ptr<ModelBuffers> buffers;
};

// Fingerprints every line and every row of every weight (one download:
// synchronises), and combines the rows of each weight in base order.
void model_create(backend::Instance *inst, const s2ft_model_shape &shape,
                  const std::vector<backend::TargetWeight> &weights, backend::Object *out) {
  Context &ctx = ctx_of(inst);
  auto m = std::make_shared<DeviceModel>();
  const size_t n_layers = static_cast<size_t>(shape.n_layers);
  m->base_fingerprints.resize(n_layers);
  m->base_max_abs.resize(n_layers);
  m->weight_fingerprint.assign(n_layers, {});
  m->row_max_abs.resize(n_layers);
  std::vector<std::vector<uint64_t>> row_fps(weights.size());
  std::vector<FingerprintJob> jobs;
  for (size_t k = 0; k < weights.size(); ++k) {
    const backend::TargetWeight &w = weights[k];
    const size_t l = static_cast<size_t>(w.layer), t = static_cast<size_t>(w.target);
    // The lines of a target (V and UP: its rows, read in stored order, which
    // are the rows of the whole-weight fingerprint too).
    if (w.target < S2FT_NUM_TARGETS) jobs.push_back({w.w, w.axis, &m->base_fingerprints[l][t], &m->base_max_abs[l][t]});
    if (w.target < S2FT_NUM_TARGETS && w.axis == S2FT_AXIS_ROWS && w.col_map.empty()) continue;
    jobs.push_back({w.w, S2FT_AXIS_ROWS, &row_fps[k], &m->row_max_abs[l][t], &w.col_map});
  }
  line_fingerprints(ctx, jobs);
  for (size_t k = 0; k < weights.size(); ++k) {
    const backend::TargetWeight &w = weights[k];
    const size_t l = static_cast<size_t>(w.layer), t = static_cast<size_t>(w.target);
    if (row_fps[k].empty()) {  // a row target: its line results are its rows'
      row_fps[k] = m->base_fingerprints[l][t];
      m->row_max_abs[l][t] = m->base_max_abs[l][t];
    }
    uint64_t h = fingerprint::kOffset;
    for (int64_t r = 0; r < w.w.rows; ++r)
      h = fingerprint::mix_u64(h, row_fps[k].at(static_cast<size_t>(w.row_map.empty() ? r : w.row_map[static_cast<size_t>(r)])));
    m->weight_fingerprint[l][t] = fingerprint::finish(h);
  }
  m->buffers = make_model_buffers(ctx, shape.n_layers);
  *out = std::move(m);
}

// The checks of the CPU backend, from the create-time fingerprints and
// line maxima (the base bytes of a line never change while the model lives).
void model_transition_op(backend::Instance *inst, void *model, const std::vector<TransitionStep> &steps,
                         const std::vector<backend::SparseStep> &sparse,
                         const std::vector<backend::LowRankStep> &low_rank, const s2ft_adapter *adapter,
                         double scale, bool force, backend::Refusal *refusal) {
  DeviceModel &m = *static_cast<DeviceModel *>(model);
  for (size_t i = 0; i < steps.size(); ++i) {
    const TransitionStep &st = steps[i];
    if (st.entry == nullptr) continue;
    const size_t l = static_cast<size_t>(st.layer), t = static_cast<size_t>(st.target);
    const std::vector<uint64_t> &got = m.base_fingerprints[l][t];
    const std::vector<float> &max_abs = m.base_max_abs[l][t];
    const int64_t k = static_cast<int64_t>(st.new_positions->size());
    auto position = [&](int64_t j) { return static_cast<size_t>((*st.new_positions)[static_cast<size_t>(j)]); };
    const bool check_range = backend::scaled_delta_is_large(st.w.dtype, scale, st.max_abs_delta);
    for (int64_t j = 0; j < k && check_range; ++j) {  // first every line's range, as the CPU backend
      const double max_delta = backend::max_abs_delta(st.entry->delta, st.by_columns, st.line_length, k, j);
      const double max_w0 = max_abs.at(position(j));
      if (backend::merge_may_overflow(st.w.dtype, max_w0, scale, max_delta)) {
        *refusal = backend::Refusal{backend::Refusal::kOverflow, static_cast<int64_t>(i), j, max_w0, max_delta};
        return;
      }
    }
    for (int64_t j = 0; j < k && !force; ++j) {
      const uint64_t want = st.entry->fingerprints[static_cast<size_t>(j)];
      if (want != 0 && got.at(position(j)) != want) {
        *refusal = backend::Refusal{backend::Refusal::kFingerprint, static_cast<int64_t>(i), j, 0.0, 0.0};
        return;
      }
    }
  }
  // Sparse entries: each element's bound from its row's create-time
  // maximum, then the whole-weight fingerprint, as the CPU backend.
  for (size_t i = 0; i < sparse.size(); ++i) {
    const backend::SparseStep &st = sparse[i];
    if (st.entry == nullptr) continue;
    const size_t l = static_cast<size_t>(st.layer), w = static_cast<size_t>(st.weight);
    const std::vector<int64_t> &pos = *st.new_positions;
    if (backend::scaled_delta_is_large(st.w.dtype, scale, st.max_abs_delta))
      for (size_t j = 0; j < pos.size(); ++j) {
        const double row_max = m.row_max_abs[l][w].at(static_cast<size_t>(pos[j] / st.w.cols));
        const double d = std::fabs(static_cast<double>(st.entry->delta[j]));
        if (backend::merge_may_overflow(st.w.dtype, row_max, scale, d)) {
          *refusal = backend::Refusal{backend::Refusal::kOverflow, static_cast<int64_t>(i), static_cast<int64_t>(j),
                                      row_max, d, true};
          return;
        }
      }
    if (st.check_fingerprint && m.weight_fingerprint[l][w] != st.entry->fingerprint) {
      *refusal = backend::Refusal{backend::Refusal::kFingerprint, static_cast<int64_t>(i), -1, 0.0, 0.0, true};
      return;
    }
  }
  // Low-rank entries: the whole-weight fingerprint, then each row's bound
  // from the create-time row maxima (the exact row where the bound fails).
  for (size_t i = 0; i < low_rank.size(); ++i) {
    const backend::LowRankStep &st = low_rank[i];
    if (st.entry == nullptr) continue;
    const size_t l = static_cast<size_t>(st.layer), w = static_cast<size_t>(st.weight);
    if (st.check_fingerprint && m.weight_fingerprint[l][w] != st.entry->fingerprint) {
      *refusal = backend::Refusal{backend::Refusal::kFingerprint, static_cast<int64_t>(i), -1, 0.0, 0.0, false, true};
      return;
    }
    const std::vector<float> &row_max = m.row_max_abs[l][w];
    const std::vector<int64_t> &row_map = *st.row_map;
    double max_w0 = 0.0, max_delta = 0.0;
    const int64_t row = backend::low_rank_overflow_row(
        st.entry->b.data(), st.entry->a.data(), st.w.rows, st.w.cols, st.entry->rank, st.w.dtype, scale,
        [&](int64_t r) { return static_cast<double>(row_max.at(static_cast<size_t>(row_map.empty() ? r : row_map[static_cast<size_t>(r)]))); },
        &max_w0, &max_delta);
    if (row >= 0) {
      *refusal = backend::Refusal{backend::Refusal::kOverflow, static_cast<int64_t>(i), row, max_w0, max_delta, false, true};
      return;
    }
  }
  model_transition(ctx_of(inst), *m.buffers, steps, sparse, low_rank, adapter, scale);
}

void adapter_upload(backend::Instance *inst, const s2ft_adapter &adapter) { mirror(ctx_of(inst), adapter); }

void forward_mixed_op(backend::Instance *inst, const MixedCall &call, const Matrix &x, const Matrix &w,
                      const std::vector<MixedAdapter> &adapters, const std::vector<MixedGroup> &groups,
                      const Matrix &y) {
  Context &ctx = ctx_of(inst);
  forward_mixed(ctx, ctx.mixed_state, call, x, w, adapters, groups, y);
}

// ---- sparse deltas ------------------------------------------------------------------------

void csr_create(backend::Instance *inst, HostCsr *csr, backend::Object *out) {
  *out = std::const_pointer_cast<DeviceCsr>(upload_csr(ctx_of(inst), *csr));
}

void csr_forward(backend::Instance *inst, const void *csr, float scale, const Matrix &x, const Matrix &y) {
  sparse_forward(ctx_of(inst), *static_cast<const DeviceCsr *>(csr), scale, x, y);
}

// ---- unstructured sparse training ------------------------------------------------------------

void sparse_set_create(backend::Instance *inst, const std::shared_ptr<const SparseEntries> &entries,
                       backend::Object *out) {
  *out = upload_sparse_set(ctx_of(inst), *entries);
}

void backward_sparse_op(backend::Instance *inst, const void *set, const Matrix &x, const Matrix &dy, const Matrix *w,
                        const Matrix *dx, const Matrix &grad, bool accumulate_dx, bool accumulate_grad) {
  backward_sparse(ctx_of(inst), *static_cast<const DeviceSparseSet *>(set), x, dy, w, dx, grad, accumulate_dx,
                  accumulate_grad);
}

// ---- SpIEL --------------------------------------------------------------------------------

void dense_gradient_op(backend::Instance *inst, const Matrix &x, const Matrix &dy, float *host) {
  dense_gradient_to_host(ctx_of(inst), x, dy, host);
}

void sparse_gradient_sums_op(backend::Instance *inst, const void *set, const Matrix &x, const Matrix &dy, void *sums) {
  add_sparse_gradient_sums(ctx_of(inst), *static_cast<const DeviceSparseSet *>(set), x, dy,
                           arena_sums(*static_cast<StatisticsArena *>(sums)));
}

void read_entries_op(backend::Instance *inst, const Matrix &w, const std::vector<int64_t> &flat, void *host) {
  read_weight_entries(ctx_of(inst), w, flat, host);
}

void write_entries_op(backend::Instance *inst, const Matrix &w, const std::vector<int64_t> &flat, const void *host) {
  write_weight_entries(ctx_of(inst), w, flat, host);
}

// LIFT's selection: cuSOLVER's SVD (or the randomized method) in double,
// ranked on the host by the CPU backend's top-k (cuda_svd.cu).
void lift_select_op(backend::Instance *inst, const Matrix &w, const backend::LiftPlan &plan,
                    std::vector<int64_t> *indices) {
  lift_select(ctx_of(inst), w, plan, indices);
}

// ---- SORSA and LIFT's score for S2FT ---------------------------------------------------------

// The split and the principal line norms: cuSOLVER's SVD in double (cuda_svd.cu).
void sorsa_init_op(backend::Instance *inst, const Matrix &w, const Matrix &u, const Matrix &s, const Matrix &vt) {
  sorsa_init(ctx_of(inst), w, u, s, vt);
}

void sorsa_forward_op(backend::Instance *inst, const backend::SorsaFactors &f, const Matrix &x, const Matrix &y,
                      const Matrix *h_saved) {
  sorsa_forward(ctx_of(inst), f, x, y, h_saved);
}

void sorsa_backward_op(backend::Instance *inst, const backend::SorsaFactors &f, const Matrix &x,
                       const Matrix *h_saved, const Matrix &dy, const Matrix *dx, const backend::SorsaGrads &g,
                       bool accumulate_dx, bool accumulate_grads) {
  sorsa_backward(ctx_of(inst), f, x, h_saved, dy, dx, g, accumulate_dx, accumulate_grads);
}

void sorsa_regularizer_op(backend::Instance *inst, const Matrix &u, const Matrix &vt,
                          const backend::SorsaRegularizer &plan, const Matrix *du, const Matrix *dvt,
                          double norms[2]) {
  sorsa_regularizer(ctx_of(inst), u, vt, plan, du, dvt, norms);
}

void principal_line_norms_op(backend::Instance *inst, const Matrix &w, int64_t rank, bool by_columns,
                             std::vector<double> *out) {
  principal_line_norms(ctx_of(inst), w, rank, by_columns, out);
}

backend::Ops make_table() {
  using backend::Entry;
  backend::Ops t;
  t.name = "cuda";
  t.capabilities = backend::kCapSparseDeltaPath;
  t.last_error = &backend::backend_last_error;
  t.device_count = &Entry<&count_devices>::call;
  t.create = &Entry<&create>::call;
  t.destroy = &destroy;
  t.set_stream = &Entry<&set_stream_op>::call;
  t.stream = &Entry<&stream_op>::call;
  t.set_workspace = &Entry<&set_workspace_op>::call;
  t.workspace_needed = &Entry<&workspace_needed>::call;
  t.synchronize = &Entry<&synchronize_op>::call;
  t.check_pointer = &Entry<&check_pointer>::call;
  t.forward_partial = &Entry<&forward_partial_op>::call;
  t.backward_partial = &Entry<&backward_partial_op>::call;
  t.permute = &Entry<&permute_op>::call;
  t.statistics_create = &Entry<&statistics_create>::call;
  t.statistics_add_lines = &Entry<&statistics_add_lines>::call;
  t.statistics_add_gradient = &Entry<&statistics_add_gradient>::call;
  t.statistics_read = &Entry<&statistics_read>::call;
  t.optimizer_create = &Entry<&optimizer_create>::call;
  t.optimizer_add_param = &Entry<&optimizer_add_param>::call;
  t.optimizer_step = &Entry<&optimizer_step_op>::call;
  t.optimizer_steps = &Entry<&optimizer_steps>::call;
  t.optimizer_set_steps = &Entry<&optimizer_set_steps>::call;
  t.optimizer_read_state = &Entry<&optimizer_read_state>::call;
  t.optimizer_write_state = &Entry<&optimizer_write_state>::call;
  t.optimizer_write_master = &Entry<&optimizer_write_master>::call;
  t.model_create = &Entry<&model_create>::call;
  t.model_transition = &Entry<&model_transition_op>::call;
  t.adapter_upload = &Entry<&adapter_upload>::call;
  t.forward_mixed = &Entry<&forward_mixed_op>::call;
  t.csr_create = &Entry<&csr_create>::call;
  t.csr_forward = &Entry<&csr_forward>::call;
  t.optimizer_reindex = &Entry<&optimizer_reindex>::call;
  t.sparse_set_create = &Entry<&sparse_set_create>::call;
  t.backward_sparse = &Entry<&backward_sparse_op>::call;
  t.lift_select = &Entry<&lift_select_op>::call;
  t.dense_gradient = &Entry<&dense_gradient_op>::call;
  t.sparse_gradient_sums = &Entry<&sparse_gradient_sums_op>::call;
  t.read_entries = &Entry<&read_entries_op>::call;
  t.write_entries = &Entry<&write_entries_op>::call;
  t.sorsa_init = &Entry<&sorsa_init_op>::call;
  t.sorsa_forward = &Entry<&sorsa_forward_op>::call;
  t.sorsa_backward = &Entry<&sorsa_backward_op>::call;
  t.sorsa_regularizer = &Entry<&sorsa_regularizer_op>::call;
  t.principal_line_norms = &Entry<&principal_line_norms_op>::call;
  return t;
}

}  // namespace
}  // namespace cuda
}  // namespace s2ft

extern "C" __attribute__((visibility("default"))) const s2ft::backend::ModuleInfo *s2ft_backend_module_v1(void) {
  static const s2ft::backend::Ops table = s2ft::cuda::make_table();
  static const s2ft::backend::ModuleInfo info{s2ft::backend::kAbiVersion, S2FT_VERSION_TEXT, &table};
  return &info;
}
