// The C entry points of s2ft_checkpoint: argument checks, then the
// checkpoint code (open.cpp, model_config.cpp, write.cpp).
#include <cstring>
#include <set>

#include "checkpoint/checkpoint.hpp"
#include "common/error.hpp"
#include "common/tensor.hpp"

namespace s2ft {
namespace {

int32_t library_dtype(const std::string &dtype) {
  if (dtype == "F32") return S2FT_F32;
  if (dtype == "F16") return S2FT_F16;
  if (dtype == "BF16") return S2FT_BF16;
  return -1;
}

size_t require_tensor(const s2ft_checkpoint &c, const char *name) {
  require_not_null(name, "name");
  const int64_t e = c.find(name);
  if (e < 0) fail_arg(std::string("the checkpoint has no tensor \"") + name + "\"");
  return static_cast<size_t>(e);
}

// The replacement's elements, in row-major order, as a 2-D view: rank 1 is
// one row; ranks 3 and 4 must be contiguous in their leading dimensions.
Matrix replacement_view(const s2ft_tensor &t, const std::string &what) {
  s2ft_tensor flat = t;
  if (t.ndim == 1) {
    flat.ndim = 2;
    flat.shape[0] = 1;
    flat.shape[1] = t.shape[0];
    flat.strides[1] = t.strides[0];
    flat.strides[0] = t.shape[0] * t.strides[0];
  } else if (t.ndim > 2) {
    int64_t rows = 1;
    for (int32_t i = 0; i + 1 < t.ndim; ++i) {
      if (i + 2 < t.ndim && t.shape[i] > 1 && t.strides[i] != t.strides[i + 1] * t.shape[i + 1])
        fail_arg(what + " must be contiguous in its leading dimensions");
      rows *= t.shape[i];
    }
    flat.ndim = 2;
    flat.shape[0] = rows;
    flat.strides[0] = t.strides[t.ndim - 2];
    flat.shape[1] = t.shape[t.ndim - 1];
    flat.strides[1] = t.strides[t.ndim - 1];
  }
  const s2ft_device cpu{S2FT_DEVICE_CPU, 0};
  return check_matrix(&flat, what.c_str(), cpu);
}

// A replacement's bytes in the stored dtype (rounded to nearest even).
std::vector<uint8_t> encode_replacement(const s2ft_checkpoint &c, size_t entry, const s2ft_tensor &t,
                                        const std::string &what) {
  const io::TensorInfo &info = c.info(entry);
  const int32_t stored = library_dtype(info.dtype);
  if (stored < 0)
    fail(S2FT_ERR_DTYPE, what + " replaces tensor \"" + info.name + "\" of dtype " + info.dtype +
                             "; only F32, F16 and BF16 tensors can be replaced");
  if (t.device.type != S2FT_DEVICE_CPU) fail(S2FT_ERR_DEVICE, what + " must be on the CPU");
  if (static_cast<size_t>(t.ndim) != info.shape.size() || t.ndim < 1 || t.ndim > S2FT_MAX_DIMS)
    fail_shape(what + " has rank " + std::to_string(t.ndim) + ", but tensor \"" + info.name + "\" has rank " +
               std::to_string(info.shape.size()));
  for (int32_t i = 0; i < t.ndim; ++i)
    if (t.shape[i] != info.shape[static_cast<size_t>(i)])
      fail_shape(what + " shape[" + std::to_string(i) + "] is " + std::to_string(t.shape[i]) + ", but tensor \"" +
                 info.name + "\" has " + std::to_string(info.shape[static_cast<size_t>(i)]));
  const Matrix m = replacement_view(t, what);
  const size_t elem = dtype_size(stored);
  std::vector<uint8_t> out(static_cast<size_t>(m.rows * m.cols) * elem);
  uint8_t *p = out.data();
  for (int64_t i = 0; i < m.rows; ++i)
    for (int64_t j = 0; j < m.cols; ++j, p += elem) {
      const float v = m.get(i, j);
      if (stored == S2FT_F32) {
        std::memcpy(p, &v, 4);
      } else {
        const uint16_t h = stored == S2FT_BF16 ? f32_to_bf16(v) : f32_to_f16(v);
        p[0] = static_cast<uint8_t>(h), p[1] = static_cast<uint8_t>(h >> 8);
      }
    }
  return out;
}

}  // namespace
}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_checkpoint_open(const char *path, s2ft_checkpoint **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_checkpoint_open", [&] {
    s2ft::require_not_null(out, "out");
    s2ft::require_not_null(path, "path");
    if (*path == '\0') s2ft::fail_arg("path is empty");
    *out = s2ft::checkpoint::open(path).release();
  });
}

S2FT_API void s2ft_checkpoint_destroy(s2ft_checkpoint *ckpt) {
  if (s2ft::destroyable(ckpt)) delete ckpt;
}

S2FT_API s2ft_status s2ft_checkpoint_shape(const s2ft_checkpoint *ckpt, s2ft_model_shape *out) {
  return s2ft::guard("s2ft_checkpoint_shape", [&] {
    const s2ft_checkpoint &c = s2ft::require_live(ckpt, "ckpt");
    s2ft::require_not_null(out, "out");
    *out = s2ft::checkpoint::model_shape(c);
  });
}

S2FT_API s2ft_status s2ft_checkpoint_config(const s2ft_checkpoint *ckpt, const char **json) {
  return s2ft::guard("s2ft_checkpoint_config", [&] {
    const s2ft_checkpoint &c = s2ft::require_live(ckpt, "ckpt");
    s2ft::require_not_null(json, "json");
    *json = c.has_config ? c.config_text.c_str() : nullptr;
  });
}

S2FT_API s2ft_status s2ft_checkpoint_tensor_count(const s2ft_checkpoint *ckpt, int64_t *count) {
  return s2ft::guard("s2ft_checkpoint_tensor_count", [&] {
    const s2ft_checkpoint &c = s2ft::require_live(ckpt, "ckpt");
    s2ft::require_not_null(count, "count");
    *count = static_cast<int64_t>(c.entries.size());
  });
}

S2FT_API s2ft_status s2ft_checkpoint_file_count(const s2ft_checkpoint *ckpt, int64_t *count) {
  return s2ft::guard("s2ft_checkpoint_file_count", [&] {
    const s2ft_checkpoint &c = s2ft::require_live(ckpt, "ckpt");
    s2ft::require_not_null(count, "count");
    *count = static_cast<int64_t>(c.shards.size());
  });
}

S2FT_API s2ft_status s2ft_checkpoint_file(const s2ft_checkpoint *ckpt, int64_t index, const char **name) {
  return s2ft::guard("s2ft_checkpoint_file", [&] {
    const s2ft_checkpoint &c = s2ft::require_live(ckpt, "ckpt");
    s2ft::require_not_null(name, "name");
    if (index < 0 || static_cast<uint64_t>(index) >= c.shards.size())
      s2ft::fail_arg("index " + std::to_string(index) + " is out of range [0, " + std::to_string(c.shards.size()) +
                     ")");
    *name = c.shards[static_cast<size_t>(index)].file.c_str();
  });
}

S2FT_API s2ft_status s2ft_checkpoint_tensor_info(const s2ft_checkpoint *ckpt, int64_t index, const char **name,
                                                 const char **dtype, int32_t *ndim, int64_t *shape,
                                                 int32_t shape_capacity, uint64_t *nbytes) {
  return s2ft::guard("s2ft_checkpoint_tensor_info", [&] {
    const s2ft_checkpoint &c = s2ft::require_live(ckpt, "ckpt");
    if (index < 0 || static_cast<uint64_t>(index) >= c.entries.size())
      s2ft::fail_arg("index " + std::to_string(index) + " is out of range [0, " + std::to_string(c.entries.size()) +
                     ")");
    const s2ft::io::TensorInfo &t = c.info(static_cast<size_t>(index));
    const int32_t rank = static_cast<int32_t>(t.shape.size());
    if (shape != nullptr && shape_capacity < rank)
      s2ft::fail_arg("shape_capacity " + std::to_string(shape_capacity) + " is below the tensor's rank " +
                     std::to_string(rank));
    if (name != nullptr) *name = t.name.c_str();
    if (dtype != nullptr) *dtype = t.dtype.c_str();
    if (ndim != nullptr) *ndim = rank;
    if (shape != nullptr)
      for (int32_t i = 0; i < rank; ++i) shape[i] = t.shape[static_cast<size_t>(i)];
    if (nbytes != nullptr) *nbytes = t.end - t.begin;
  });
}

S2FT_API s2ft_status s2ft_checkpoint_tensor(s2ft_checkpoint *ckpt, const char *name, s2ft_tensor *out) {
  return s2ft::guard("s2ft_checkpoint_tensor", [&] {
    s2ft_checkpoint &c = s2ft::require_live(ckpt, "ckpt");
    s2ft::require_not_null(out, "out");
    const size_t e = s2ft::require_tensor(c, name);
    const s2ft::io::TensorInfo &t = c.info(e);
    const int32_t dtype = s2ft::library_dtype(t.dtype);
    if (dtype < 0)
      s2ft::fail(S2FT_ERR_DTYPE, "tensor \"" + t.name + "\" has dtype " + t.dtype +
                                     "; views are F32, F16 or BF16 (use s2ft_checkpoint_tensor_data)");
    if (t.shape.empty() || t.shape.size() > S2FT_MAX_DIMS)
      s2ft::fail_shape("tensor \"" + t.name + "\" has rank " + std::to_string(t.shape.size()) + "; views have rank 1 to " +
                       std::to_string(S2FT_MAX_DIMS));
    const s2ft_status st = s2ft_tensor_init(out, c.bytes(e), dtype, S2FT_DEVICE_CPU, 0,
                                            static_cast<int32_t>(t.shape.size()), t.shape.data());
    if (st != S2FT_OK) s2ft::fail(st, s2ft_last_error());
  });
}

S2FT_API s2ft_status s2ft_checkpoint_tensor_data(const s2ft_checkpoint *ckpt, const char *name, const void **data,
                                                 uint64_t *nbytes) {
  return s2ft::guard("s2ft_checkpoint_tensor_data", [&] {
    const s2ft_checkpoint &c = s2ft::require_live(ckpt, "ckpt");
    s2ft::require_not_null(data, "data");
    s2ft::require_not_null(nbytes, "nbytes");
    const size_t e = s2ft::require_tensor(c, name);
    *data = c.bytes(e);
    *nbytes = c.info(e).end - c.info(e).begin;
  });
}

S2FT_API s2ft_status s2ft_checkpoint_write_options_init(s2ft_checkpoint_write_options *opts, uint32_t version) {
  return s2ft::guard("s2ft_checkpoint_write_options_init", [&] {
    s2ft::require_not_null(opts, "opts");
    if (version != S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION)
      s2ft::fail_arg("version " + std::to_string(version) + " is not a version this library knows (" +
                     std::to_string(S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION) + ")");
    *opts = s2ft_checkpoint_write_options{};
    opts->version = version;
    opts->copy_other_files = 1;
  });
}

S2FT_API s2ft_status s2ft_checkpoint_write(const s2ft_checkpoint *ckpt, const char *out_dir, const char *const *names,
                                           const s2ft_tensor *replacements, int64_t n_replace,
                                           const s2ft_checkpoint_write_options *opts) {
  return s2ft::guard("s2ft_checkpoint_write", [&] {
    using namespace s2ft;
    const s2ft_checkpoint &c = require_live(ckpt, "ckpt");
    require_not_null(out_dir, "out_dir");
    if (*out_dir == '\0') fail_arg("out_dir is empty");
    if (n_replace < 0) fail_arg("n_replace is negative");
    if (n_replace > 0) {
      require_not_null(names, "names");
      require_not_null(replacements, "replacements");
    }
    checkpoint::WriteOptions options;
    if (opts != nullptr) {
      if (opts->version != S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION)
        fail_arg("opts->version " + std::to_string(opts->version) +
                 " is unknown (call s2ft_checkpoint_write_options_init)");
      if (opts->n_exclude < 0) fail_arg("opts->n_exclude is negative");
      if (opts->n_exclude > 0 && opts->exclude == nullptr) fail_arg("opts->exclude is NULL");
      options.max_shard_bytes = opts->max_shard_bytes;
      options.copy_other_files = opts->copy_other_files != 0;
      options.progress = opts->progress;
      options.progress_user = opts->progress_user;
      for (int64_t i = 0; i < opts->n_exclude; ++i) {
        if (opts->exclude[i] == nullptr) fail_arg("opts->exclude[" + std::to_string(i) + "] is NULL");
        options.exclude.emplace_back(opts->exclude[i]);
      }
    }
    std::vector<checkpoint::Replacement> reps;
    std::set<size_t> seen;
    for (int64_t i = 0; i < n_replace; ++i) {
      const std::string what = "replacements[" + std::to_string(i) + "]";
      if (names[i] == nullptr) fail_arg("names[" + std::to_string(i) + "] is NULL");
      const size_t e = require_tensor(c, names[i]);
      if (!seen.insert(e).second) fail_arg(std::string("tensor \"") + names[i] + "\" is replaced twice");
      reps.push_back({e, encode_replacement(c, e, replacements[i], what)});
    }
    checkpoint::write(c, out_dir, reps, options);
  });
}

}  // extern "C"
