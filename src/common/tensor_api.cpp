// Checked views of tensor descriptors (check_matrix) and the descriptor
// helpers of the C API. Not part of the code the backend modules share
// (common/tensor.cpp): checking a device pointer asks the device's backend.
#include <limits>
#include <string>

#include "backend/loader.hpp"
#include "common/error.hpp"
#include "common/tensor.hpp"

namespace s2ft {

Matrix check_matrix(const s2ft_tensor *t, const char *name, const s2ft_device &device) {
  const std::string n(name);
  if (t == nullptr) fail_arg(n + " is NULL");
  if (t->ndim != 2) fail_shape(n + " must have rank 2, got rank " + std::to_string(t->ndim));
  Matrix m;
  m.dtype = dtype_id(t->dtype);
  if (m.dtype < 0)
    fail(S2FT_ERR_DTYPE, n + " has unsupported dtype (code " + std::to_string(t->dtype.code) + ", bits " +
                             std::to_string(t->dtype.bits) + ", lanes " + std::to_string(t->dtype.lanes) +
                             "); expected f32, f16 or bf16");
  if (t->device.type != device.type || t->device.id != device.id)
    fail(S2FT_ERR_DEVICE, n + " is on " + device_name(t->device) + " but the context is on " + device_name(device));
  m.device = t->device;
  m.rows = t->shape[0];
  m.cols = t->shape[1];
  m.rs = t->strides[0];
  m.cs = t->strides[1];
  if (m.rows < 0 || m.cols < 0) fail_shape(n + " has a negative extent");
  if (m.rs < 0 || m.cs < 0) fail_arg(n + " has a negative stride (not supported)");
  if (!m.empty()) {
    if (t->data == nullptr) fail_arg(n + ".data is NULL for a non-empty tensor");
    // The last element's offset must be representable: bound every product.
    const int64_t lim = std::numeric_limits<int64_t>::max() / 8;
    if ((m.rs != 0 && m.rows - 1 > lim / m.rs) || (m.cs != 0 && m.cols - 1 > lim / m.cs))
      fail_arg(n + " has strides and shape whose extent overflows");
    const int64_t last = (m.rows - 1) * m.rs + (m.cols - 1) * m.cs;
    if (last > lim) fail_arg(n + " has strides and shape whose extent overflows");
    if (m.rows > 1 && m.cols > 1 && (m.rs == 0 || m.cs == 0))
      fail_arg(n + " has a zero stride (broadcast views are not supported)");
  }
  if (t->byte_offset > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 2))
    fail_arg(n + ".byte_offset is out of range");
  m.base = static_cast<char *>(t->data) + t->byte_offset;
  // A descriptor that claims device memory must point at it: a host pointer
  // handed to a kernel would fault the whole context instead of failing here.
  // (The device's backend is loaded: a context on it exists.)
  if (!m.empty()) {
    const backend::Ops &ops = backend::ops_for(m.device.type);
    backend::check(ops, ops.check_pointer(m.device.id, m.base, name));
  }
  return m;
}

Matrix check_vector(const s2ft_tensor *t, const char *name, const s2ft_device &device, int64_t n) {
  const std::string nm(name);
  if (t == nullptr) fail_arg(nm + " is NULL");
  if (t->ndim == 1) {
    s2ft_tensor r = *t;  // [n] seen as [1, n]
    r.ndim = 2;
    r.shape[0] = 1;
    r.shape[1] = t->shape[0];
    r.strides[0] = 0;  // one row: never stepped over
    r.strides[1] = t->strides[0];
    if (t->strides[0] < 0) fail_arg(nm + " has a negative stride (not supported)");
    if (t->shape[0] != n)
      fail_shape(nm + " must be [" + std::to_string(n) + "] or [1, " + std::to_string(n) + "], got [" +
                 std::to_string(t->shape[0]) + "]");
    if (n > 1 && t->strides[0] == 0) fail_arg(nm + " has a zero stride (broadcast views are not supported)");
    return check_matrix(&r, name, device);
  }
  if (t->ndim != 2)
    fail_shape(nm + " must have rank 1 ([" + std::to_string(n) + "]) or 2 ([1, " + std::to_string(n) + "]), got rank " +
               std::to_string(t->ndim));
  Matrix m = check_matrix(t, name, device);
  if (m.rows != 1 || m.cols != n)
    fail_shape(nm + " must be [" + std::to_string(n) + "] or [1, " + std::to_string(n) + "], got [" +
               std::to_string(m.rows) + ", " + std::to_string(m.cols) + "]");
  if (n > 1 && m.cs == 0) fail_arg(nm + " has a zero stride (broadcast views are not supported)");
  return m;
}

}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_tensor_init(s2ft_tensor *t, void *data, int32_t dtype, int32_t device_type,
                                      int32_t device_id, int32_t ndim, const int64_t *shape) {
  return s2ft::guard("s2ft_tensor_init", [&] {
    s2ft::require_not_null(t, "t");
    s2ft::require_not_null(shape, "shape");
    if (ndim < 1 || ndim > S2FT_MAX_DIMS)
      s2ft::fail_arg("ndim must be in 1.." + std::to_string(S2FT_MAX_DIMS) + ", got " + std::to_string(ndim));
    if (device_type != S2FT_DEVICE_CPU && device_type != S2FT_DEVICE_CUDA)
      s2ft::fail_arg("device_type must be S2FT_DEVICE_CPU or S2FT_DEVICE_CUDA, got " + std::to_string(device_type));
    if (device_id < 0) s2ft::fail_arg("device_id must be >= 0");
    s2ft_dtype dt = s2ft::dtype_from_id(dtype);
    bool empty = false;
    for (int32_t i = 0; i < ndim; ++i) {
      if (shape[i] < 0) s2ft::fail_arg("shape[" + std::to_string(i) + "] is negative");
      empty = empty || shape[i] == 0;
    }
    // Every stride (a product of the later extents, a 0 counting as 1) and
    // the size in bytes must be representable in int64, empty or not.
    int64_t bytes = static_cast<int64_t>(s2ft::dtype_size(dtype));
    for (int32_t i = ndim - 1; i >= 0; --i)
      if (__builtin_mul_overflow(bytes, shape[i] > 0 ? shape[i] : 1, &bytes))
        s2ft::fail_arg("shape's size overflows 64 bits (at shape[" + std::to_string(i) + "] = " +
                       std::to_string(shape[i]) + ")");
    if (data == nullptr && !empty) s2ft::fail_arg("data is NULL for a non-empty tensor");
    s2ft_tensor r{};
    r.data = data;
    r.device = s2ft_device{device_type, device_id};
    r.ndim = ndim;
    r.dtype = dt;
    int64_t stride = 1;
    for (int32_t i = ndim - 1; i >= 0; --i) {
      r.shape[i] = shape[i];
      r.strides[i] = stride;
      stride *= shape[i] > 0 ? shape[i] : 1;
    }
    *t = r;
  });
}

S2FT_API s2ft_status s2ft_tensor_cpu_f32_2d(s2ft_tensor *t, float *data, int64_t rows, int64_t cols) {
  const int64_t shape[2] = {rows, cols};
  return s2ft_tensor_init(t, data, S2FT_F32, S2FT_DEVICE_CPU, 0, 2, shape);
}

}  // extern "C"
