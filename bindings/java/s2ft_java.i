/*
 * Java interface of libs2ft: the raw SWIG layer (package org.s2ft.swig),
 * generated into the build directory. The idiomatic classes in
 * src/org/s2ft/ are written on top of it; users never see this layer.
 *
 * Mapping (GDAL-style: the neutral ../swig/s2ft.i plus typemaps here):
 *  - s2ft_status results: a negative status throws
 *    org.s2ft.S2ftException(status, s2ft_last_error()); the Java method
 *    returns a long: the out-handle or out-count of the call, else 0.
 *  - handles (s2ft_x *) are Java longs (the C pointer); an out-handle
 *    parameter (s2ft_x **out) is dropped from the Java signature and its
 *    value becomes the method's result.
 *  - tensors (s2ft_tensor *) are org.s2ft.Tensor objects. A Tensor over a
 *    direct ByteBuffer (or a raw address) is passed zero-copy; a Tensor
 *    over a float[] is pinned or copied by the JVM for the duration of the
 *    call (GetFloatArrayElements) and written back after the call when the
 *    C parameter is not const.
 *  - count queries (..., out, capacity, count) take a nullable Java array
 *    (capacity = its length) and return the count.
 * The wrapper is C (no C++ exceptions involved): a JNI exception is raised
 * and the wrapper still runs its cleanup before returning to Java.
 */
%module S2ftNative

%{
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "s2ft/s2ft.h"

/* Raises org.s2ft.S2ftException(status, message of the last error). */
static void s2ft_java_throw_status(JNIEnv *jenv, s2ft_status status) {
  jclass cls;
  jmethodID ctor;
  jstring msg;
  jobject ex;
  if ((*jenv)->ExceptionCheck(jenv)) return;
  cls = (*jenv)->FindClass(jenv, "org/s2ft/S2ftException");
  if (cls == NULL) return; /* NoClassDefFoundError is pending */
  ctor = (*jenv)->GetMethodID(jenv, cls, "<init>", "(ILjava/lang/String;)V");
  if (ctor == NULL) return;
  msg = (*jenv)->NewStringUTF(jenv, s2ft_last_error());
  if (msg == NULL) return;
  ex = (*jenv)->NewObject(jenv, cls, ctor, (jint)status, msg);
  if (ex != NULL) (*jenv)->Throw(jenv, (jthrowable)ex);
}

static void s2ft_java_throw(JNIEnv *jenv, const char *cls_name, const char *msg) {
  jclass cls;
  if ((*jenv)->ExceptionCheck(jenv)) return;
  cls = (*jenv)->FindClass(jenv, cls_name);
  if (cls != NULL) (*jenv)->ThrowNew(jenv, cls, msg);
}

/* A float[] held (pinned or copied) for the duration of one call. */
typedef struct s2ft_java_pin {
  jfloatArray array;
  jfloat *elems;
} s2ft_java_pin;

static void s2ft_java_unpin(JNIEnv *jenv, s2ft_java_pin *pin, jint mode) {
  if (pin->elems != NULL) (*jenv)->ReleaseFloatArrayElements(jenv, pin->array, pin->elems, mode);
  pin->elems = NULL;
  pin->array = NULL;
}

static jlong s2ft_java_long_field(JNIEnv *jenv, jclass cls, jobject obj, const char *name) {
  jfieldID id = (*jenv)->GetFieldID(jenv, cls, name, "J");
  return id == NULL ? 0 : (*jenv)->GetLongField(jenv, obj, id);
}

static jint s2ft_java_int_field(JNIEnv *jenv, jclass cls, jobject obj, const char *name) {
  jfieldID id = (*jenv)->GetFieldID(jenv, cls, name, "I");
  return id == NULL ? 0 : (*jenv)->GetIntField(jenv, obj, id);
}

static jobject s2ft_java_object_field(JNIEnv *jenv, jclass cls, jobject obj, const char *name,
                                      const char *sig) {
  jfieldID id = (*jenv)->GetFieldID(jenv, cls, name, sig);
  return id == NULL ? NULL : (*jenv)->GetObjectField(jenv, obj, id);
}

/* Fills `t` from an org.s2ft.Tensor (fields buffer, array, address, dtype,
 * deviceType, deviceId, shape, strides, byteOffset). Returns 0 with a
 * pending Java exception on failure. */
static int s2ft_java_tensor_in(JNIEnv *jenv, jobject jt, s2ft_tensor *t, s2ft_java_pin *pin) {
  jclass cls = (*jenv)->GetObjectClass(jenv, jt);
  jobject buffer = s2ft_java_object_field(jenv, cls, jt, "buffer", "Ljava/nio/ByteBuffer;");
  jobject array = s2ft_java_object_field(jenv, cls, jt, "array", "[F");
  jlongArray shape = (jlongArray)s2ft_java_object_field(jenv, cls, jt, "shape", "[J");
  jlongArray strides = (jlongArray)s2ft_java_object_field(jenv, cls, jt, "strides", "[J");
  jlong address = s2ft_java_long_field(jenv, cls, jt, "address");
  jint dtype = s2ft_java_int_field(jenv, cls, jt, "dtype");
  jint device_type = s2ft_java_int_field(jenv, cls, jt, "deviceType");
  jint device_id = s2ft_java_int_field(jenv, cls, jt, "deviceId");
  jlong byte_offset = s2ft_java_long_field(jenv, cls, jt, "byteOffset");
  jlong dims[S2FT_MAX_DIMS], steps[S2FT_MAX_DIMS];
  int64_t shape64[S2FT_MAX_DIMS];
  jsize ndim, i;
  void *data = NULL;
  s2ft_status st;
  if ((*jenv)->ExceptionCheck(jenv)) return 0;
  if (shape == NULL || strides == NULL) {
    s2ft_java_throw(jenv, "java/lang/NullPointerException", "tensor shape/strides are null");
    return 0;
  }
  ndim = (*jenv)->GetArrayLength(jenv, shape);
  if (ndim < 1 || ndim > S2FT_MAX_DIMS || (*jenv)->GetArrayLength(jenv, strides) != ndim) {
    s2ft_java_throw(jenv, "java/lang/IllegalArgumentException", "tensor rank must be 1..4, strides one per dimension");
    return 0;
  }
  (*jenv)->GetLongArrayRegion(jenv, shape, 0, ndim, dims);
  (*jenv)->GetLongArrayRegion(jenv, strides, 0, ndim, steps);
  if (buffer != NULL) {
    data = (*jenv)->GetDirectBufferAddress(jenv, buffer);
    if (data == NULL) {
      s2ft_java_throw(jenv, "java/lang/IllegalArgumentException", "tensor buffer is not a direct ByteBuffer");
      return 0;
    }
  } else if (array != NULL) {
    pin->array = (jfloatArray)array;
    pin->elems = (*jenv)->GetFloatArrayElements(jenv, pin->array, NULL);
    if (pin->elems == NULL) return 0; /* OutOfMemoryError is pending */
    data = pin->elems;
  } else {
    data = (void *)(intptr_t)address;
  }
  for (i = 0; i < ndim; ++i) shape64[i] = (int64_t)dims[i];
  st = s2ft_tensor_init(t, data, dtype, device_type, device_id, (int32_t)ndim, shape64);
  if (st != S2FT_OK) {
    s2ft_java_unpin(jenv, pin, JNI_ABORT);
    s2ft_java_throw_status(jenv, st);
    return 0;
  }
  for (i = 0; i < ndim; ++i) t->strides[i] = (int64_t)steps[i];
  t->byte_offset = (uint64_t)byte_offset;
  return 1;
}

/* Per-call storage for an org.s2ft.LayerWeights[] turned into C. */
#define S2FT_JAVA_LAYER_FIELDS 7
typedef struct s2ft_java_layers {
  jsize n;
  s2ft_layer_weights *layers;
  s2ft_tensor *tensors;  /* n * 7 */
  s2ft_java_pin *pins;   /* n * 7 */
} s2ft_java_layers;

static void s2ft_java_layers_free(JNIEnv *jenv, s2ft_java_layers *l, jint mode) {
  jsize i;
  if (l->pins != NULL)
    for (i = 0; i < l->n * S2FT_JAVA_LAYER_FIELDS; ++i) s2ft_java_unpin(jenv, &l->pins[i], mode);
  free(l->layers);
  free(l->tensors);
  free(l->pins);
  memset(l, 0, sizeof *l);
}

static int s2ft_java_layers_in(JNIEnv *jenv, jobjectArray arr, s2ft_java_layers *l) {
  static const char *const names[S2FT_JAVA_LAYER_FIELDS] = {"q", "k", "v", "o", "gate", "up", "down"};
  jsize i;
  int f;
  memset(l, 0, sizeof *l);
  l->n = (*jenv)->GetArrayLength(jenv, arr);
  l->layers = (s2ft_layer_weights *)calloc((size_t)l->n + 1, sizeof *l->layers);
  l->tensors = (s2ft_tensor *)calloc((size_t)l->n * S2FT_JAVA_LAYER_FIELDS + 1, sizeof *l->tensors);
  l->pins = (s2ft_java_pin *)calloc((size_t)l->n * S2FT_JAVA_LAYER_FIELDS + 1, sizeof *l->pins);
  if (l->layers == NULL || l->tensors == NULL || l->pins == NULL) {
    s2ft_java_throw(jenv, "java/lang/OutOfMemoryError", "s2ft: layer weights");
    return 0;
  }
  for (i = 0; i < l->n; ++i) {
    jobject lw = (*jenv)->GetObjectArrayElement(jenv, arr, i);
    jclass cls;
    s2ft_tensor **slots[S2FT_JAVA_LAYER_FIELDS];
    if (lw == NULL) {
      s2ft_java_throw(jenv, "java/lang/NullPointerException", "a LayerWeights entry is null");
      return 0;
    }
    cls = (*jenv)->GetObjectClass(jenv, lw);
    slots[0] = &l->layers[i].q; slots[1] = &l->layers[i].k; slots[2] = &l->layers[i].v;
    slots[3] = &l->layers[i].o; slots[4] = &l->layers[i].gate; slots[5] = &l->layers[i].up;
    slots[6] = &l->layers[i].down;
    for (f = 0; f < S2FT_JAVA_LAYER_FIELDS; ++f) {
      jobject jt = s2ft_java_object_field(jenv, cls, lw, names[f], "Lorg/s2ft/Tensor;");
      size_t slot = (size_t)i * S2FT_JAVA_LAYER_FIELDS + (size_t)f;
      if ((*jenv)->ExceptionCheck(jenv)) return 0;
      if (jt == NULL) continue;
      if (!s2ft_java_tensor_in(jenv, jt, &l->tensors[slot], &l->pins[slot])) return 0;
      *slots[f] = &l->tensors[slot];
      (*jenv)->DeleteLocalRef(jenv, jt);
    }
    (*jenv)->DeleteLocalRef(jenv, cls);
    (*jenv)->DeleteLocalRef(jenv, lw);
  }
  return 1;
}
%}

/* The JNI class loads the native library before its first use. */
%pragma(java) jniclasscode=%{
  static {
    org.s2ft.S2ft.loadNative();
  }
%}

/* Struct proxies (options, shapes) are used by org.s2ft only: make their
 * constructors and pointers public across packages, and free them
 * explicitly (delete()), never from a finalizer. */
SWIG_JAVABODY_PROXY(public, public, SWIGTYPE)
SWIG_JAVABODY_TYPEWRAPPER(public, public, public, SWIGTYPE)
%typemap(javafinalize) SWIGTYPE ""

/* ---- status codes ---------------------------------------------------------- */
%typemap(jni) s2ft_status "jlong"
%typemap(jtype) s2ft_status "long"
%typemap(jstype) s2ft_status "long"
%typemap(javaout) s2ft_status { return $jnicall; }
%typemap(out) s2ft_status %{
  if ($1 < 0) s2ft_java_throw_status(jenv, $1);
  $result = 0;
%}
/* s2ft_status_string(status) takes a status as a plain int. */
%typemap(jni) s2ft_status status "jint"
%typemap(jtype) s2ft_status status "int"
%typemap(jstype) s2ft_status status "int"
%typemap(javain) s2ft_status status "$javainput"
%typemap(in) s2ft_status status %{ $1 = (s2ft_status)$input; %}

/* ---- handles ---------------------------------------------------------------- */
%define S2FT_JAVA_HANDLE(T)
%typemap(jni) T *, const T * "jlong"
%typemap(jtype) T *, const T * "long"
%typemap(jstype) T *, const T * "long"
%typemap(javain) T *, const T * "$javainput"
%typemap(javaout) T *, const T * { return $jnicall; }
%typemap(in) T *, const T * %{ $1 = ($1_ltype)(intptr_t)$input; %}
%typemap(out) T *, const T * %{ $result = (jlong)(intptr_t)$1; %}
%typemap(in, numinputs=0) T **out (T *handle = NULL) %{ $1 = &handle; %}
%typemap(argout) T **out %{ $result = (jlong)(intptr_t)handle$argnum; %}
%enddef

S2FT_JAVA_HANDLE(s2ft_context)
S2FT_JAVA_HANDLE(s2ft_statistics)
S2FT_JAVA_HANDLE(s2ft_selection)
S2FT_JAVA_HANDLE(s2ft_optimizer)
S2FT_JAVA_HANDLE(s2ft_adapter)
S2FT_JAVA_HANDLE(s2ft_model)
S2FT_JAVA_HANDLE(s2ft_sparse_delta)

/* CUDA streams and workspaces (void *) are raw addresses as Java longs;
 * s2ft_context_stream returns the stream as the method's result. */
%define S2FT_JAVA_ADDRESS_IN(NAME)
%typemap(jni) void *NAME "jlong"
%typemap(jtype) void *NAME "long"
%typemap(jstype) void *NAME "long"
%typemap(javain) void *NAME "$javainput"
%typemap(in) void *NAME %{ $1 = (void *)(intptr_t)$input; %}
%enddef
S2FT_JAVA_ADDRESS_IN(stream)
S2FT_JAVA_ADDRESS_IN(workspace)
%typemap(in, numinputs=0) void **out (void *address = NULL) %{ $1 = &address; %}
%typemap(argout) void **out %{ $result = (jlong)(intptr_t)address$argnum; %}

/* s2ft_model_applied: the applied adapter becomes the result (0: none). */
%typemap(in, numinputs=0) const s2ft_adapter **adapter (const s2ft_adapter *handle = NULL) %{ $1 = (void *)&handle; %}
%typemap(argout) const s2ft_adapter **adapter %{ $result = (jlong)(intptr_t)handle$argnum; %}

/* Arrays of adapter handles (fuse, forward_mixed) from long[]. */
%typemap(jni) const s2ft_adapter *const *adapters "jlongArray"
%typemap(jtype) const s2ft_adapter *const *adapters "long[]"
%typemap(jstype) const s2ft_adapter *const *adapters "long[]"
%typemap(javain) const s2ft_adapter *const *adapters "$javainput"
%typemap(in) const s2ft_adapter *const *adapters {
  $1 = NULL;
  if ($input != NULL) {
    jsize n = (*jenv)->GetArrayLength(jenv, $input), i;
    const s2ft_adapter **handles = (const s2ft_adapter **)calloc((size_t)n + 1, sizeof *handles);
    jlong *elems = (*jenv)->GetLongArrayElements(jenv, $input, NULL);
    if (handles == NULL || elems == NULL) {
      free((void *)handles);
      if (elems != NULL) (*jenv)->ReleaseLongArrayElements(jenv, $input, elems, JNI_ABORT);
      s2ft_java_throw(jenv, "java/lang/OutOfMemoryError", "s2ft: adapter array");
      return $null;
    }
    for (i = 0; i < n; ++i) handles[i] = (const s2ft_adapter *)(intptr_t)elems[i];
    (*jenv)->ReleaseLongArrayElements(jenv, $input, elems, JNI_ABORT);
    $1 = (void *)handles;
  }
}
%typemap(freearg) const s2ft_adapter *const *adapters %{ free((void *)$1); %}

/* ---- nullable input arrays ---------------------------------------------------- */
%define S2FT_JAVA_ARRAY_IN(CTYPE, JARRAY, JTYPE, JELEM, KIND, NAME)
%typemap(jni) const CTYPE *NAME "JARRAY"
%typemap(jtype) const CTYPE *NAME "JTYPE"
%typemap(jstype) const CTYPE *NAME "JTYPE"
%typemap(javain) const CTYPE *NAME "$javainput"
%typemap(in) const CTYPE *NAME %{
  $1 = $input == NULL ? NULL : ($1_ltype)(*jenv)->Get##KIND##ArrayElements(jenv, $input, NULL);
  if ($input != NULL && $1 == NULL) return $null;
%}
%typemap(freearg) const CTYPE *NAME %{
  if ($1 != NULL) (*jenv)->Release##KIND##ArrayElements(jenv, $input, (JELEM *)$1, JNI_ABORT);
%}
%enddef

S2FT_JAVA_ARRAY_IN(double, jdoubleArray, double[], jdouble, Double, weights)
S2FT_JAVA_ARRAY_IN(double, jdoubleArray, double[], jdouble, Double, scales)
S2FT_JAVA_ARRAY_IN(int64_t, jlongArray, long[], jlong, Long, offsets)
S2FT_JAVA_ARRAY_IN(int32_t, jintArray, int[], jint, Int, segment_adapter)
/* s2ft_sparse_delta_create: CSR arrays; org.s2ft.SparseDelta checks their
 * lengths against rows and nnz before the call. */
S2FT_JAVA_ARRAY_IN(int64_t, jlongArray, long[], jlong, Long, row_offsets)
S2FT_JAVA_ARRAY_IN(int64_t, jlongArray, long[], jlong, Long, col_indices)
S2FT_JAVA_ARRAY_IN(float, jfloatArray, float[], jfloat, Float, values)

/* s2ft_adapter_set: (lines, n_lines) from one nullable long[]. */
%typemap(jni) (const int64_t *lines, int64_t n_lines) "jlongArray"
%typemap(jtype) (const int64_t *lines, int64_t n_lines) "long[]"
%typemap(jstype) (const int64_t *lines, int64_t n_lines) "long[]"
%typemap(javain) (const int64_t *lines, int64_t n_lines) "$javainput"
%typemap(in) (const int64_t *lines, int64_t n_lines) %{
  $1 = $input == NULL ? NULL : ($1_ltype)(*jenv)->GetLongArrayElements(jenv, $input, NULL);
  if ($input != NULL && $1 == NULL) return $null;
  $2 = $input == NULL ? 0 : (int64_t)(*jenv)->GetArrayLength(jenv, $input);
%}
%typemap(freearg) (const int64_t *lines, int64_t n_lines) %{
  if ($1 != NULL) (*jenv)->ReleaseLongArrayElements(jenv, $input, (jlong *)$1, JNI_ABORT);
%}

/* ---- count queries: (out, capacity, count) -> nullable array in, count out ---- */
%define S2FT_JAVA_COUNT_QUERY(CTYPE, OUTNAME, COUNTNAME, JARRAY, JTYPE, JELEM, KIND)
%typemap(jni) (CTYPE *OUTNAME, int64_t capacity, int64_t *COUNTNAME) "JARRAY"
%typemap(jtype) (CTYPE *OUTNAME, int64_t capacity, int64_t *COUNTNAME) "JTYPE"
%typemap(jstype) (CTYPE *OUTNAME, int64_t capacity, int64_t *COUNTNAME) "JTYPE"
%typemap(javain) (CTYPE *OUTNAME, int64_t capacity, int64_t *COUNTNAME) "$javainput"
%typemap(in) (CTYPE *OUTNAME, int64_t capacity, int64_t *COUNTNAME) (int64_t count = 0) %{
  $1 = $input == NULL ? NULL : ($1_ltype)(*jenv)->Get##KIND##ArrayElements(jenv, $input, NULL);
  if ($input != NULL && $1 == NULL) return $null;
  $2 = $input == NULL ? 0 : (int64_t)(*jenv)->GetArrayLength(jenv, $input);
  $3 = &count;
%}
%typemap(argout) (CTYPE *OUTNAME, int64_t capacity, int64_t *COUNTNAME) %{ $result = (jlong)*$3; %}
%typemap(freearg) (CTYPE *OUTNAME, int64_t capacity, int64_t *COUNTNAME) %{
  if ($1 != NULL) (*jenv)->Release##KIND##ArrayElements(jenv, $input, (JELEM *)$1, 0);
%}
%enddef

S2FT_JAVA_COUNT_QUERY(int64_t, out, count, jlongArray, long[], jlong, Long)
S2FT_JAVA_COUNT_QUERY(double, out, n_units, jdoubleArray, double[], jdouble, Double)

/* s2ft_adapter_lines: (lines, fingerprints, capacity, count); capacity is
 * the shorter of the two arrays given. */
%typemap(jni) (int64_t *lines, uint64_t *fingerprints, int64_t capacity, int64_t *count) "jlongArray"
%typemap(jtype) (int64_t *lines, uint64_t *fingerprints, int64_t capacity, int64_t *count) "long[]"
%typemap(jstype) (int64_t *lines, uint64_t *fingerprints, int64_t capacity, int64_t *count) "long[]"
%typemap(javain) (int64_t *lines, uint64_t *fingerprints, int64_t capacity, int64_t *count) "$javainput"
%typemap(in) (int64_t *lines, uint64_t *fingerprints, int64_t capacity, int64_t *count) (int64_t count = 0) %{
  $1 = $input == NULL ? NULL : ($1_ltype)(*jenv)->GetLongArrayElements(jenv, $input, NULL);
  if ($input != NULL && $1 == NULL) return $null;
  $2 = NULL;
  $3 = $input == NULL ? 0 : (int64_t)(*jenv)->GetArrayLength(jenv, $input);
  $4 = &count;
%}
%typemap(argout) (int64_t *lines, uint64_t *fingerprints, int64_t capacity, int64_t *count) %{ $result = (jlong)*$4; %}
%typemap(freearg) (int64_t *lines, uint64_t *fingerprints, int64_t capacity, int64_t *count) %{
  if ($1 != NULL) (*jenv)->ReleaseLongArrayElements(jenv, $input, (jlong *)$1, 0);
%}

/* ---- single values out: the result, or a nullable array of length >= 1 ---- */
%define S2FT_JAVA_RESULT_OUT(CTYPE, NAME)
%typemap(in, numinputs=0) CTYPE *NAME (CTYPE value = 0) %{ $1 = &value; %}
%typemap(argout) CTYPE *NAME %{ $result = (jlong)value$argnum; %}
%enddef
S2FT_JAVA_RESULT_OUT(int64_t, index)      /* s2ft_optimizer_add_param */
S2FT_JAVA_RESULT_OUT(int64_t, out)        /* s2ft_optimizer_step_count */
S2FT_JAVA_RESULT_OUT(uint32_t, out)       /* s2ft_selection_targets */
S2FT_JAVA_RESULT_OUT(int32_t, out)        /* s2ft_device_count */
S2FT_JAVA_RESULT_OUT(size_t, out)         /* s2ft_context_workspace_needed */

%define S2FT_JAVA_ARRAY_OUT(CTYPE, JARRAY, JTYPE, JELEM, KIND, NAME)
%typemap(jni) CTYPE *NAME "JARRAY"
%typemap(jtype) CTYPE *NAME "JTYPE"
%typemap(jstype) CTYPE *NAME "JTYPE"
%typemap(javain) CTYPE *NAME "$javainput"
%typemap(in) CTYPE *NAME (CTYPE value = 0) %{ $1 = $input == NULL ? NULL : &value; %}
%typemap(argout) CTYPE *NAME %{
  if ($input != NULL) { JELEM v = (JELEM)value$argnum; (*jenv)->Set##KIND##ArrayRegion(jenv, $input, 0, 1, &v); }
%}
%enddef
S2FT_JAVA_ARRAY_OUT(double, jdoubleArray, double[], jdouble, Double, grad_norm)
S2FT_JAVA_ARRAY_OUT(double, jdoubleArray, double[], jdouble, Double, scale)
S2FT_JAVA_ARRAY_OUT(double, jdoubleArray, double[], jdouble, Double, default_scale)
S2FT_JAVA_ARRAY_OUT(uint32_t, jlongArray, long[], jlong, Long, targets)
S2FT_JAVA_ARRAY_OUT(int64_t, jlongArray, long[], jlong, Long, begin)
S2FT_JAVA_ARRAY_OUT(int64_t, jlongArray, long[], jlong, Long, count)
S2FT_JAVA_ARRAY_OUT(int64_t, jlongArray, long[], jlong, Long, rows)   /* s2ft_sparse_delta_info */
S2FT_JAVA_ARRAY_OUT(int64_t, jlongArray, long[], jlong, Long, cols)
S2FT_JAVA_ARRAY_OUT(int64_t, jlongArray, long[], jlong, Long, nnz)

/* ---- tensors --------------------------------------------------------------- */
%typemap(jni) const s2ft_tensor *, s2ft_tensor * "jobject"
%typemap(jtype) const s2ft_tensor *, s2ft_tensor * "org.s2ft.Tensor"
%typemap(jstype) const s2ft_tensor *, s2ft_tensor * "org.s2ft.Tensor"
%typemap(javain) const s2ft_tensor *, s2ft_tensor * "$javainput"
%define S2FT_JAVA_TENSOR_IN(TYPE)
%typemap(in) TYPE (s2ft_tensor tensor, s2ft_java_pin pin) %{
  memset(&pin, 0, sizeof pin);
  $1 = NULL;
  if ($input != NULL) {
    if (!s2ft_java_tensor_in(jenv, $input, &tensor, &pin)) return $null;
    $1 = &tensor;
  }
%}
%enddef
S2FT_JAVA_TENSOR_IN(const s2ft_tensor *)
S2FT_JAVA_TENSOR_IN(s2ft_tensor *)
/* Inputs are released without copy-back; outputs are written back. */
%typemap(freearg) const s2ft_tensor * %{ s2ft_java_unpin(jenv, &pin$argnum, JNI_ABORT); %}
%typemap(freearg) s2ft_tensor * %{ s2ft_java_unpin(jenv, &pin$argnum, 0); %}

/* s2ft_optimizer_step: (grads, n_grads) from a Tensor[]. */
%typemap(jni) (const s2ft_tensor *grads, int64_t n_grads) "jobjectArray"
%typemap(jtype) (const s2ft_tensor *grads, int64_t n_grads) "org.s2ft.Tensor[]"
%typemap(jstype) (const s2ft_tensor *grads, int64_t n_grads) "org.s2ft.Tensor[]"
%typemap(javain) (const s2ft_tensor *grads, int64_t n_grads) "$javainput"
%typemap(in) (const s2ft_tensor *grads, int64_t n_grads) (s2ft_tensor *tensors = NULL, s2ft_java_pin *pins = NULL, jsize n = 0) %{
  $1 = NULL;
  $2 = 0;
  if ($input != NULL) {
    jsize i;
    n = (*jenv)->GetArrayLength(jenv, $input);
    tensors = (s2ft_tensor *)calloc((size_t)n + 1, sizeof *tensors);
    pins = (s2ft_java_pin *)calloc((size_t)n + 1, sizeof *pins);
    if (tensors == NULL || pins == NULL) {
      free(tensors);
      free(pins);
      s2ft_java_throw(jenv, "java/lang/OutOfMemoryError", "s2ft: gradient array");
      return $null;
    }
    for (i = 0; i < n; ++i) {
      jobject jt = (*jenv)->GetObjectArrayElement(jenv, $input, i);
      if (jt == NULL || !s2ft_java_tensor_in(jenv, jt, &tensors[i], &pins[i])) {
        jsize j;
        for (j = 0; j < i; ++j) s2ft_java_unpin(jenv, &pins[j], JNI_ABORT);
        free(tensors);
        free(pins);
        if (jt == NULL) s2ft_java_throw(jenv, "java/lang/NullPointerException", "a gradient tensor is null");
        return $null;
      }
      (*jenv)->DeleteLocalRef(jenv, jt);
    }
    $1 = tensors;
    $2 = (int64_t)n;
  }
%}
%typemap(freearg) (const s2ft_tensor *grads, int64_t n_grads) %{
  if (pins$argnum != NULL) {
    jsize i;
    for (i = 0; i < n$argnum; ++i) s2ft_java_unpin(jenv, &pins$argnum[i], JNI_ABORT);
  }
  free(tensors$argnum);
  free(pins$argnum);
%}

/* ---- layer weights (permute: one layer; model/adapter: one per layer) ------ */
%typemap(jni) const s2ft_layer_weights * "jobjectArray"
%typemap(jtype) const s2ft_layer_weights * "org.s2ft.LayerWeights[]"
%typemap(jstype) const s2ft_layer_weights * "org.s2ft.LayerWeights[]"
%typemap(javain) const s2ft_layer_weights * "$javainput"
%typemap(in) const s2ft_layer_weights * (s2ft_java_layers held) %{
  memset(&held, 0, sizeof held);
  $1 = NULL;
  if ($input != NULL) {
    if (!s2ft_java_layers_in(jenv, $input, &held)) {
      s2ft_java_layers_free(jenv, &held, JNI_ABORT);
      return $null;
    }
    $1 = held.layers;
  }
%}
/* s2ft_permute edits the weights in place, so arrays are written back. */
%typemap(freearg) const s2ft_layer_weights * %{ s2ft_java_layers_free(jenv, &held$argnum, 0); %}

/* ---- slices ------------------------------------------------------------------ */
%typemap(jni) const s2ft_slice * "jobject"
%typemap(jtype) const s2ft_slice * "org.s2ft.Slice"
%typemap(jstype) const s2ft_slice * "org.s2ft.Slice"
%typemap(javain) const s2ft_slice * "$javainput"
%typemap(in) const s2ft_slice * (s2ft_slice slc, jlongArray slc_idx = NULL, jlong *slc_elems = NULL) %{
  $1 = NULL;
  if ($input != NULL) {
    jclass cls = (*jenv)->GetObjectClass(jenv, $input);
    memset(&slc, 0, sizeof slc);
    slc.axis = (int32_t)s2ft_java_int_field(jenv, cls, $input, "axis");
    slc.begin = (int64_t)s2ft_java_long_field(jenv, cls, $input, "begin");
    slc.count = (int64_t)s2ft_java_long_field(jenv, cls, $input, "count");
    slc_idx = (jlongArray)s2ft_java_object_field(jenv, cls, $input, "indices", "[J");
    if ((*jenv)->ExceptionCheck(jenv)) return $null;
    if (slc_idx != NULL) {
      slc_elems = (*jenv)->GetLongArrayElements(jenv, slc_idx, NULL);
      if (slc_elems == NULL) return $null;
      slc.indices = (const int64_t *)(const void *)slc_elems;
    }
    $1 = &slc;
  }
%}
%typemap(freearg) const s2ft_slice * %{
  if (slc_elems$argnum != NULL) (*jenv)->ReleaseLongArrayElements(jenv, slc_idx$argnum, slc_elems$argnum, JNI_ABORT);
%}

/* The seed is 64 bits: a Java long read as unsigned, not a BigInteger. */
%apply long long { uint64_t seed };

/* Descriptors are built by org.s2ft.Tensor; the C helpers are not needed. */
%ignore s2ft_tensor_init;
%ignore s2ft_tensor_cpu_f32_2d;
%ignore s2ft_tensor;
%ignore s2ft_slice;
%ignore s2ft_layer_weights;
%ignore s2ft_dtype;

%include <arrays_java.i>

%include "s2ft.i"
