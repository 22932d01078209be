// The CPU backend: its instance (the per-context state) and its operations,
// one file each in this folder; ops.cpp puts them into the table. Each
// operation is the table entry of the same name without the status (it
// throws s2ft::Error instead; backend/entry.hpp converts).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.hpp"

namespace s2ft {
namespace cpu {

// A CPU context's state: grow-only scratch memory, so that per-call packing
// of 16-bit or strided GEMM operands does not allocate and page-fault on
// every call. Slot s keeps its buffer until the instance dies; contents are
// undefined on return.
struct Instance : backend::Instance {
  static constexpr int kScratchSlots = 4;
  float *scratch(int slot, size_t n);
  int threads = 1;  // for the backend's own loops (parallel.hpp); BLAS has its own

 private:
  struct Scratch {
    std::unique_ptr<float[]> data;
    size_t size = 0;
  };
  Scratch scratch_[kScratchSlots];
};

inline Instance &instance(backend::Instance *inst) { return *static_cast<Instance *>(inst); }

// partial.cpp
void forward_partial(backend::Instance *inst, const Lines &lines, const Matrix &x, const Matrix &w, const Matrix &y,
                     const Matrix *x_saved);
void backward_partial(backend::Instance *inst, const Lines &lines, const Matrix &w, const Matrix &x_in,
                      const Matrix &dy, const Matrix *dx, const Matrix &dw, bool accumulate_dx, bool accumulate_dw);

// permute.cpp
void permute(backend::Instance *inst, const std::vector<backend::PermuteJob> &jobs, bool forward);

// statistics.cpp
void statistics_create(backend::Instance *inst, int64_t size, backend::Object *out);
void statistics_add_lines(backend::Instance *inst, void *sums, const backend::UnitSums &dst, const Matrix &m);
void statistics_add_gradient(backend::Instance *inst, void *sums, const backend::UnitSums &dst, const Matrix &x,
                             const Matrix &dy);
void statistics_read(backend::Instance *inst, const void *sums, int64_t begin, int64_t count, double *host);

// optimizer.cpp
void optimizer_create(backend::Instance *inst, backend::Object *out);
void optimizer_add_param(backend::Instance *inst, const OptimizerParam &p, const s2ft_optimizer_options &o,
                         backend::Object *out);
void optimizer_step(backend::Instance *inst, void *state, const std::vector<OptimizerParam> &params,
                    const std::vector<Matrix> &grads, const s2ft_optimizer_options &o, double lr,
                    int64_t assumed_steps, bool report, backend::StepReport *out);
void optimizer_steps(backend::Instance *inst, const void *state, int64_t *out);
void optimizer_set_steps(backend::Instance *inst, void *state, int64_t steps);
void optimizer_read_state(backend::Instance *inst, const OptimizerParam &p, backend::StateTensor which, float *host,
                          size_t count);
void optimizer_write_state(backend::Instance *inst, const OptimizerParam &p, backend::StateTensor which,
                           const float *host, size_t count);
void optimizer_write_master(backend::Instance *inst, const OptimizerParam &p);

// model.cpp
void model_create(backend::Instance *inst, const s2ft_model_shape &shape,
                  const std::vector<backend::TargetWeight> &weights, backend::Object *out);
void model_transition(backend::Instance *inst, void *model, const std::vector<backend::TransitionStep> &steps,
                      const std::vector<backend::SparseStep> &sparse, const std::vector<backend::LowRankStep> &low_rank,
                      const s2ft_adapter *adapter, double scale, bool force, backend::Refusal *refusal);

// forward_mixed.cpp
void forward_mixed(backend::Instance *inst, const backend::MixedCall &call, const Matrix &x, const Matrix &w,
                   const std::vector<backend::MixedAdapter> &adapters, const std::vector<backend::MixedGroup> &groups,
                   const Matrix &y);

// csr.cpp
void csr_create(backend::Instance *inst, HostCsr *csr, backend::Object *out);
void csr_forward(backend::Instance *inst, const void *csr, float scale, const Matrix &x, const Matrix &y);

// sparse_backward.cpp
void sparse_set_create(backend::Instance *inst, const std::shared_ptr<const SparseEntries> &entries,
                       backend::Object *out);
void backward_sparse(backend::Instance *inst, const void *set, const Matrix &x, const Matrix &dy, const Matrix *w,
                     const Matrix *dx, const Matrix &grad, bool accumulate_dx, bool accumulate_grad);

// lift.cpp
void lift_select(backend::Instance *inst, const Matrix &w, const backend::LiftPlan &plan,
                 std::vector<int64_t> *indices);

// sparse_backward.cpp (continued): SpIEL-AG's candidate sums
void sparse_gradient_sums(backend::Instance *inst, const void *set, const Matrix &x, const Matrix &dy, void *sums);

// spiel.cpp
void dense_gradient(backend::Instance *inst, const Matrix &x, const Matrix &dy, float *host);
void read_entries(backend::Instance *inst, const Matrix &w, const std::vector<int64_t> &flat, void *host);
void write_entries(backend::Instance *inst, const Matrix &w, const std::vector<int64_t> &flat, const void *host);

// sorsa.cpp: SORSA and LIFT's score for S2FT
void sorsa_init(backend::Instance *inst, const Matrix &w, const Matrix &u, const Matrix &s, const Matrix &vt);
void sorsa_forward(backend::Instance *inst, const backend::SorsaFactors &f, const Matrix &x, const Matrix &y,
                   const Matrix *h_saved);
void sorsa_backward(backend::Instance *inst, const backend::SorsaFactors &f, const Matrix &x, const Matrix *h_saved,
                    const Matrix &dy, const Matrix *dx, const backend::SorsaGrads &g, bool accumulate_dx,
                    bool accumulate_grads);
void sorsa_regularizer(backend::Instance *inst, const Matrix &u, const Matrix &vt, const backend::SorsaRegularizer &plan,
                       const Matrix *du, const Matrix *dvt, double norms[2]);
void principal_line_norms(backend::Instance *inst, const Matrix &w, int64_t rank, bool by_columns,
                          std::vector<double> *out);

// optimizer.cpp (continued)
void optimizer_reindex(backend::Instance *inst, const OptimizerParam &prev, const OptimizerParam &next,
                       const std::vector<int64_t> &source, const s2ft_optimizer_options &o, backend::Object *out);

}  // namespace cpu
}  // namespace s2ft
