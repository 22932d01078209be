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
%}

%include "s2ft.i"
