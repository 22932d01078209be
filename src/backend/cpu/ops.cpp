// The CPU backend's operation table, and its device and context operations:
// one device, no streams (every call has finished when it returns), no
// device workspace.
#include <string>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/gemm.hpp"
#include "backend/cpu/parallel.hpp"
#include "backend/entry.hpp"
#include "backend/loader.hpp"
#include "common/error.hpp"

namespace s2ft {
namespace cpu {

float *Instance::scratch(int slot, size_t n) {
  Scratch &s = scratch_[slot];
  if (s.size < n) {
    s.data.reset(new float[n]);
    s.size = n;
  }
  return s.data.get();
}

namespace {

void device_count(int32_t *out) { *out = 1; }

void create(int32_t device_id, int32_t num_threads, backend::Instance **out) {
  if (device_id != 0) fail_arg("opts->device_id must be 0 for the CPU");
  set_gemm_threads(num_threads);
  auto inst = new Instance;
  inst->threads = default_threads(num_threads);
  *out = inst;
}

void destroy(backend::Instance *inst) noexcept { delete &instance(inst); }

[[noreturn]] void needs_cuda(const char *what) {
  fail(S2FT_ERR_UNSUPPORTED, std::string(what) + " needs a CUDA context; this context is on the CPU");
}

void set_stream(backend::Instance *, void *) { needs_cuda("a stream"); }
void stream(backend::Instance *, void **out) { *out = nullptr; }
void set_workspace(backend::Instance *, void *, size_t) { needs_cuda("a workspace"); }
void workspace_needed(backend::Instance *, size_t *out) { *out = 0; }
void synchronize(backend::Instance *) {}
void check_pointer(int32_t, const void *, const char *) {}  // host memory cannot be told from other host memory

void adapter_upload(backend::Instance *, const s2ft_adapter &) {}  // the CPU reads the host entries

backend::Ops make_table() {
  using backend::Entry;
  backend::Ops t;
  t.name = "cpu";
  t.capabilities = 0;
  t.last_error = &backend::backend_last_error;
  t.device_count = &Entry<&device_count>::call;
  t.create = &Entry<&create>::call;
  t.destroy = &destroy;
  t.set_stream = &Entry<&set_stream>::call;
  t.stream = &Entry<&stream>::call;
  t.set_workspace = &Entry<&set_workspace>::call;
  t.workspace_needed = &Entry<&workspace_needed>::call;
  t.synchronize = &Entry<&synchronize>::call;
  t.check_pointer = &Entry<&check_pointer>::call;
  t.forward_partial = &Entry<&forward_partial>::call;
  t.backward_partial = &Entry<&backward_partial>::call;
  t.permute = &Entry<&permute>::call;
  t.statistics_create = &Entry<&statistics_create>::call;
  t.statistics_add_lines = &Entry<&statistics_add_lines>::call;
  t.statistics_add_gradient = &Entry<&statistics_add_gradient>::call;
  t.statistics_read = &Entry<&statistics_read>::call;
  t.optimizer_create = &Entry<&optimizer_create>::call;
  t.optimizer_add_param = &Entry<&optimizer_add_param>::call;
  t.optimizer_step = &Entry<&optimizer_step>::call;
  t.optimizer_steps = &Entry<&optimizer_steps>::call;
  t.optimizer_set_steps = &Entry<&optimizer_set_steps>::call;
  t.optimizer_read_state = &Entry<&optimizer_read_state>::call;
  t.optimizer_write_state = &Entry<&optimizer_write_state>::call;
  t.optimizer_write_master = &Entry<&optimizer_write_master>::call;
  t.model_create = &Entry<&model_create>::call;
  t.model_transition = &Entry<&model_transition>::call;
  t.adapter_upload = &Entry<&adapter_upload>::call;
  t.forward_mixed = &Entry<&forward_mixed>::call;
  t.csr_create = &Entry<&csr_create>::call;
  t.csr_forward = &Entry<&csr_forward>::call;
  t.optimizer_reindex = &Entry<&optimizer_reindex>::call;
  t.sparse_set_create = &Entry<&sparse_set_create>::call;
  t.backward_sparse = &Entry<&backward_sparse>::call;
  t.lift_select = &Entry<&lift_select>::call;
  t.dense_gradient = &Entry<&dense_gradient>::call;
  t.sparse_gradient_sums = &Entry<&sparse_gradient_sums>::call;
  t.read_entries = &Entry<&read_entries>::call;
  t.write_entries = &Entry<&write_entries>::call;
  t.sorsa_init = &Entry<&sorsa_init>::call;
  t.sorsa_forward = &Entry<&sorsa_forward>::call;
  t.sorsa_backward = &Entry<&sorsa_backward>::call;
  t.sorsa_regularizer = &Entry<&sorsa_regularizer>::call;
  t.principal_line_norms = &Entry<&principal_line_norms>::call;
  return t;
}

}  // namespace
}  // namespace cpu

namespace backend {
const Ops &cpu_ops() {
  static const Ops table = cpu::make_table();
  return table;
}
}  // namespace backend

}  // namespace s2ft
