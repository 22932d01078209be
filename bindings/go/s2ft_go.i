/*
 * Go interface of libs2ft: the raw cgo layer (package internal/capi),
 * generated at build time into a copy of the module in the build directory.
 * The idiomatic package s2ft (s2ft.go and friends) is written on top of it.
 *
 * Go keeps SWIG's natural mapping (status codes as ints, handles as
 * Swigcptr types, C structs as proxies allocated in C memory); the helpers
 * below cover what cgo's pointer rules make awkward: out-handles, arrays of
 * handles, descriptors and their C-owned data buffers.
 */
%module capi

%{
#include "s2ft/s2ft.h"

/* Exported by internal/capi/progress.go: runs the Go function registered
 * under `handle`. */
extern void s2ftGoProgress(uintptr_t handle, uint64_t done, uint64_t total);

static void s2ft_go_progress(void *user, uint64_t done, uint64_t total) {
  s2ftGoProgress((uintptr_t)user, done, total);
}
%}

%include <cpointer.i>

/* Out-handle cells: new_X_out() gives an `X **` to pass as `out`. */
%pointer_functions(s2ft_context *, context_out)
%pointer_functions(s2ft_statistics *, statistics_out)
%pointer_functions(s2ft_selection *, selection_out)
%pointer_functions(s2ft_optimizer *, optimizer_out)
%pointer_functions(s2ft_adapter *, adapter_out)
%pointer_functions(s2ft_model *, model_out)
%pointer_functions(s2ft_sparse_delta *, sparse_delta_out)
%pointer_functions(s2ft_checkpoint *, checkpoint_out)
%pointer_functions(s2ft_sparse_set *, sparse_set_out)
%pointer_functions(s2ft_spiel *, spiel_out)

/* SWIG's Go mapping of `char **` (a *string) does not fit out-strings or
 * string arrays: these calls are reached through the s2ft_go_ helpers
 * below, which return strings as values and take string arrays as handles.
 * The option structs are filled by the helpers too. */
%ignore s2ft_checkpoint_config;
%ignore s2ft_checkpoint_file;
%ignore s2ft_checkpoint_tensor_info;
%ignore s2ft_checkpoint_write;
%ignore s2ft_checkpoint_write_options;
%ignore s2ft_checkpoint_write_options_init;
%ignore s2ft_model_apply_files;
%ignore s2ft_adapter_meta;
%ignore s2ft_adapter_meta_at;
%ignore s2ft_adapter_export_peft;
%ignore s2ft_peft_export_options;
%ignore s2ft_peft_export_options_init;

%inline %{
#include <stdlib.h>
#include <string.h>

/* Arrays of descriptors, layer weights and handles, in C memory so that C
 * may keep pointers to them during a call without breaking cgo's rules. */
s2ft_tensor *s2ft_go_tensors_new(int64_t n) { return (s2ft_tensor *)calloc((size_t)(n > 0 ? n : 1), sizeof(s2ft_tensor)); }
s2ft_tensor *s2ft_go_tensors_at(s2ft_tensor *a, int64_t i) { return a + i; }
void s2ft_go_tensor_copy(s2ft_tensor *dst, int64_t i, const s2ft_tensor *src) { dst[i] = *src; }
void s2ft_go_tensor_set_stride(s2ft_tensor *t, int32_t dim, int64_t stride) { t->strides[dim] = stride; }
s2ft_layer_weights *s2ft_go_layers_new(int64_t n) { return (s2ft_layer_weights *)calloc((size_t)(n > 0 ? n : 1), sizeof(s2ft_layer_weights)); }
void s2ft_go_layers_set(s2ft_layer_weights *a, int64_t layer, int32_t field, s2ft_tensor *t) {
  s2ft_layer_weights *l = a + layer;
  switch (field) {
    case 0: l->q = t; break;
    case 1: l->k = t; break;
    case 2: l->v = t; break;
    case 3: l->o = t; break;
    case 4: l->gate = t; break;
    case 5: l->up = t; break;
    default: l->down = t; break;
  }
}
s2ft_adapter **s2ft_go_adapters_new(int64_t n) { return (s2ft_adapter **)calloc((size_t)(n > 0 ? n : 1), sizeof(s2ft_adapter *)); }
void s2ft_go_adapters_set(s2ft_adapter **a, int64_t i, s2ft_adapter *x) { a[i] = x; }
s2ft_slice *s2ft_go_slice_new(int32_t axis, int64_t begin, int64_t count, int64_t *indices) {
  /* indices are copied into the same allocation, freed with it */
  s2ft_slice *s = (s2ft_slice *)calloc(1, sizeof(s2ft_slice) + (indices ? (size_t)count * sizeof(int64_t) : 0));
  if (s == NULL) return NULL;
  s->axis = axis; s->begin = begin; s->count = count;
  if (indices != NULL) {
    int64_t *copy = (int64_t *)(void *)(s + 1);
    memcpy(copy, indices, (size_t)count * sizeof(int64_t));
    s->indices = copy;
  }
  return s;
}
/* Host buffers for tensors that the library may keep (models, optimizers). */
void *s2ft_go_alloc(int64_t bytes) { return calloc(1, (size_t)(bytes > 0 ? bytes : 1)); }
void s2ft_go_free(void *p) { free(p); }

/* What Go needs of a descriptor the library made (a checkpoint's view, a
 * model's weight): S2FT_F32/F16/BF16 (-1 for another dtype), its extents and
 * strides, and the address of its first element. */
int32_t s2ft_go_tensor_dtype(const s2ft_tensor *t) {
  if (t->dtype.code == S2FT_DLPACK_FLOAT && t->dtype.bits == 32) return S2FT_F32;
  if (t->dtype.code == S2FT_DLPACK_FLOAT && t->dtype.bits == 16) return S2FT_F16;
  if (t->dtype.code == S2FT_DLPACK_BFLOAT && t->dtype.bits == 16) return S2FT_BF16;
  return -1;
}
int32_t s2ft_go_tensor_ndim(const s2ft_tensor *t) { return t->ndim; }
int64_t s2ft_go_tensor_dim(const s2ft_tensor *t, int32_t i) { return t->shape[i]; }
int64_t s2ft_go_tensor_stride(const s2ft_tensor *t, int32_t i) { return t->strides[i]; }
void *s2ft_go_tensor_address(const s2ft_tensor *t) { return (char *)t->data + t->byte_offset; }
s2ft_tensor *s2ft_go_layer_weight(const s2ft_layer_weights *l, int32_t field) {
  switch (field) {
    case 0: return l->q;
    case 1: return l->k;
    case 2: return l->v;
    case 3: return l->o;
    case 4: return l->gate;
    case 5: return l->up;
    default: return l->down;
  }
}

/* Arrays of C strings (paths, names), as opaque handles: SWIG gives Go no
 * usable `char **`. */
void *s2ft_go_strings_new(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(char *)); }
int32_t s2ft_go_strings_set(void *a, int64_t i, const char *s) { return (((char **)a)[i] = strdup(s)) != NULL; }
void s2ft_go_strings_free(void *a, int64_t n) {
  int64_t i;
  if (a == NULL) return;
  for (i = 0; i < n; ++i) free(((char **)a)[i]);
  free(a);
}

/* Strings the library owns, returned as values (SWIG copies them into Go
 * strings; NULL becomes ""): *status receives the call's status and
 * *present whether the string was not NULL. */
const char *s2ft_go_checkpoint_config(const s2ft_checkpoint *c, int64_t *status, int64_t *present) {
  const char *json = NULL;
  *status = s2ft_checkpoint_config(c, &json);
  *present = json != NULL;
  return json;
}
const char *s2ft_go_checkpoint_file(const s2ft_checkpoint *c, int64_t index, int64_t *status) {
  const char *name = NULL;
  *status = s2ft_checkpoint_file(c, index, &name);
  return name;
}
/* Tensor `index`: its name and dtype (by `which`: 0 name, 1 dtype). */
const char *s2ft_go_checkpoint_tensor_string(const s2ft_checkpoint *c, int64_t index, int32_t which,
                                             int64_t *status) {
  const char *name = NULL, *dtype = NULL;
  *status = s2ft_checkpoint_tensor_info(c, index, &name, &dtype, NULL, NULL, 0, NULL);
  return which == 0 ? name : dtype;
}
/* Tensor `index`: its rank, extents (when capacity >= rank) and size. */
s2ft_status s2ft_go_checkpoint_tensor_extents(const s2ft_checkpoint *c, int64_t index, int64_t *ndim,
                                              int64_t *shape, int64_t capacity, uint64_t *nbytes) {
  int32_t rank = 0;
  s2ft_status st = s2ft_checkpoint_tensor_info(c, index, NULL, NULL, &rank, NULL, 0, nbytes);
  *ndim = rank;
  if (st == S2FT_OK && shape != NULL && capacity >= rank && rank > 0)
    st = s2ft_checkpoint_tensor_info(c, index, NULL, NULL, &rank, shape, rank, NULL);
  return st;
}
const char *s2ft_go_adapter_meta(const s2ft_adapter *a, const char *key, int64_t *status, int64_t *present) {
  const char *value = NULL;
  *status = s2ft_adapter_meta(a, key, &value);
  *present = value != NULL;
  return value;
}
/* Metadata entry `index`: its key (which 0) or value (which 1). */
const char *s2ft_go_adapter_meta_at(const s2ft_adapter *a, int64_t index, int32_t which, int64_t *status) {
  const char *key = NULL, *value = NULL;
  *status = s2ft_adapter_meta_at(a, index, &key, &value);
  return which == 0 ? key : value;
}
s2ft_status s2ft_go_adapter_remove_meta(s2ft_adapter *a, const char *key) {
  return s2ft_adapter_set_meta(a, key, NULL);
}

/* Calls whose options or string arrays Go passes as plain values. */
s2ft_status s2ft_go_checkpoint_write(const s2ft_checkpoint *c, const char *out_dir, void *names,
                                     const s2ft_tensor *replacements, int64_t n_replace,
                                     uint64_t max_shard_bytes, int32_t copy_other_files, void *exclude,
                                     int64_t n_exclude, uintptr_t progress) {
  s2ft_checkpoint_write_options opts;
  s2ft_status st = s2ft_checkpoint_write_options_init(&opts, S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION);
  if (st != S2FT_OK) return st;
  opts.max_shard_bytes = max_shard_bytes;
  opts.copy_other_files = copy_other_files;
  opts.exclude = (const char *const *)exclude;
  opts.n_exclude = n_exclude;
  if (progress != 0) {  /* a handle of capi.RegisterProgress */
    opts.progress = s2ft_go_progress;
    opts.progress_user = (void *)progress;
  }
  return s2ft_checkpoint_write(c, out_dir, (const char *const *)names, replacements, n_replace, &opts);
}
s2ft_status s2ft_go_model_apply_files(s2ft_model *m, void *paths, const double *weights, int64_t n, uint32_t flags) {
  return s2ft_model_apply_files(m, (const char *const *)paths, weights, n, flags);
}
/* s2ft_spiel_step with the flag as an int64_t (SWIG gives Go int32_t *
 * as *int, 8 bytes, of which C would write 4). */
s2ft_status s2ft_go_spiel_step(s2ft_spiel *spiel, s2ft_context *ctx, s2ft_tensor *weight, int64_t *reselected) {
  int32_t moved = 0;
  s2ft_status st = s2ft_spiel_step(spiel, ctx, weight, &moved);
  *reselected = moved;
  return st;
}
/* base_model "" is written as null; scale NaN means the default scale. */
s2ft_status s2ft_go_adapter_export_peft(const s2ft_adapter *a, const char *out_dir, const char *base_model,
                                        double scale) {
  s2ft_peft_export_options opts;
  s2ft_status st = s2ft_peft_export_options_init(&opts, S2FT_PEFT_EXPORT_OPTIONS_VERSION);
  if (st != S2FT_OK) return st;
  opts.base_model_name_or_path = base_model;
  opts.scale = scale;
  return s2ft_adapter_export_peft(a, out_dir, &opts);
}
%}

%include "s2ft.i"
