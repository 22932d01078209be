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

/* True when an org.s2ft.NativeHandle is closed (or the check failed, with
 * a pending exception). */
static int s2ft_java_closed(JNIEnv *jenv, jobject handle) {
  jclass cls = (*jenv)->GetObjectClass(jenv, handle);
  jmethodID is_closed = (*jenv)->GetMethodID(jenv, cls, "isClosed", "()Z");
  if (is_closed == NULL) return 1;
  return (*jenv)->CallBooleanMethod(jenv, handle, is_closed) || (*jenv)->ExceptionCheck(jenv);
}

/* A new org.s2ft.Tensor (Tensor.fromNative) describing memory the library
 * holds (a checkpoint's tensor, a model's weight): over a direct ByteBuffer
 * when the addressed bytes fit in one, else by its raw address. NULL with a
 * pending exception on failure. */
static jobject s2ft_java_tensor_out(JNIEnv *jenv, const s2ft_tensor *t) {
  jint dtype;
  uint64_t elem, extent = 0, bytes;
  int32_t i, empty = 0;
  jlong dims[S2FT_MAX_DIMS], steps[S2FT_MAX_DIMS];
  jlongArray shape, strides;
  jobject buffer = NULL, tensor;
  jclass cls;
  jmethodID make;
  if (t->dtype.code == S2FT_DLPACK_FLOAT && t->dtype.bits == 32) {
    dtype = S2FT_F32; elem = 4;
  } else if (t->dtype.code == S2FT_DLPACK_FLOAT && t->dtype.bits == 16) {
    dtype = S2FT_F16; elem = 2;
  } else if (t->dtype.code == S2FT_DLPACK_BFLOAT && t->dtype.bits == 16) {
    dtype = S2FT_BF16; elem = 2;
  } else {
    s2ft_java_throw(jenv, "java/lang/IllegalArgumentException", "s2ft: a tensor of an unknown dtype");
    return NULL;
  }
  if (t->ndim < 1 || t->ndim > S2FT_MAX_DIMS) {
    s2ft_java_throw(jenv, "java/lang/IllegalArgumentException", "s2ft: a tensor of rank outside 1..4");
    return NULL;
  }
  for (i = 0; i < t->ndim; ++i) {
    dims[i] = (jlong)t->shape[i];
    steps[i] = (jlong)t->strides[i];
    if (t->shape[i] == 0) empty = 1;
    else extent += (uint64_t)(t->shape[i] - 1) * (uint64_t)t->strides[i];
  }
  bytes = t->byte_offset + (empty ? 0 : (extent + 1) * elem);
  if (t->device.type == S2FT_DEVICE_CPU && t->data != NULL && bytes > 0 && bytes <= (uint64_t)INT32_MAX) {
    buffer = (*jenv)->NewDirectByteBuffer(jenv, t->data, (jlong)bytes);
    if (buffer == NULL) return NULL;
  }
  shape = (*jenv)->NewLongArray(jenv, t->ndim);
  strides = (*jenv)->NewLongArray(jenv, t->ndim);
  if (shape == NULL || strides == NULL) return NULL;
  (*jenv)->SetLongArrayRegion(jenv, shape, 0, t->ndim, dims);
  (*jenv)->SetLongArrayRegion(jenv, strides, 0, t->ndim, steps);
  cls = (*jenv)->FindClass(jenv, "org/s2ft/Tensor");
  if (cls == NULL) return NULL;
  make = (*jenv)->GetStaticMethodID(jenv, cls, "fromNative", "(Ljava/nio/ByteBuffer;JIII[J[JJ)Lorg/s2ft/Tensor;");
  if (make == NULL) return NULL;
  tensor = (*jenv)->CallStaticObjectMethod(jenv, cls, make, buffer, (jlong)(intptr_t)t->data, dtype,
                                           (jint)t->device.type, (jint)t->device.id, shape, strides,
                                           (jlong)t->byte_offset);
  (*jenv)->DeleteLocalRef(jenv, cls);
  (*jenv)->DeleteLocalRef(jenv, shape);
  (*jenv)->DeleteLocalRef(jenv, strides);
  if (buffer != NULL) (*jenv)->DeleteLocalRef(jenv, buffer);
  return (*jenv)->ExceptionCheck(jenv) ? NULL : tensor;
}

/* Stores `value` as element 0 of a holder array (ignored when null or empty). */
static void s2ft_java_hold(JNIEnv *jenv, jobjectArray holder, jobject value) {
  if (holder == NULL || value == NULL || (*jenv)->ExceptionCheck(jenv)) return;
  if ((*jenv)->GetArrayLength(jenv, holder) < 1) return;
  (*jenv)->SetObjectArrayElement(jenv, holder, 0, value);
}

/* A NUL-terminated C string as a new Java byte[] (the exact UTF-8 bytes; the
 * Java side decodes them), NULL for NULL. */
static jbyteArray s2ft_java_bytes(JNIEnv *jenv, const char *s) {
  jbyteArray out;
  jsize n;
  if (s == NULL) return NULL;
  n = (jsize)strlen(s);
  out = (*jenv)->NewByteArray(jenv, n);
  if (out != NULL) (*jenv)->SetByteArrayRegion(jenv, out, 0, n, (const jbyte *)s);
  return out;
}

/* A Java byte[] (UTF-8, no NUL inside) as a new NUL-terminated C string;
 * NULL for null, or on failure with a pending exception. */
static char *s2ft_java_utf8(JNIEnv *jenv, jbyteArray bytes, int *failed) {
  jsize n;
  char *s;
  *failed = 0;
  if (bytes == NULL) return NULL;
  n = (*jenv)->GetArrayLength(jenv, bytes);
  s = (char *)malloc((size_t)n + 1);
  if (s == NULL) {
    s2ft_java_throw(jenv, "java/lang/OutOfMemoryError", "s2ft: string");
    *failed = 1;
    return NULL;
  }
  (*jenv)->GetByteArrayRegion(jenv, bytes, 0, n, (jbyte *)s);
  s[n] = '\0';
  return s;
}

/* A Java String[] as a NULL-terminated array of new C strings (modified
 * UTF-8, as SWIG passes every const char *); free with s2ft_java_strings_free. */
static char **s2ft_java_strings(JNIEnv *jenv, jobjectArray arr, jsize *count) {
  jsize n, i;
  char **out;
  *count = 0;
  if (arr == NULL) return NULL;
  n = (*jenv)->GetArrayLength(jenv, arr);
  out = (char **)calloc((size_t)n + 1, sizeof *out);
  if (out == NULL) {
    s2ft_java_throw(jenv, "java/lang/OutOfMemoryError", "s2ft: string array");
    return NULL;
  }
  for (i = 0; i < n; ++i) {
    jstring js = (jstring)(*jenv)->GetObjectArrayElement(jenv, arr, i);
    const char *utf;
    if (js == NULL) {
      s2ft_java_throw(jenv, "java/lang/NullPointerException", "s2ft: a string in the array is null");
      break;
    }
    utf = (*jenv)->GetStringUTFChars(jenv, js, NULL);
    if (utf == NULL) break;
    out[i] = strdup(utf);
    (*jenv)->ReleaseStringUTFChars(jenv, js, utf);
    (*jenv)->DeleteLocalRef(jenv, js);
    if (out[i] == NULL) {
      s2ft_java_throw(jenv, "java/lang/OutOfMemoryError", "s2ft: string");
      break;
    }
  }
  *count = i;
  return out;
}

static void s2ft_java_strings_free(char **strings, jsize count) {
  jsize i;
  if (strings == NULL) return;
  for (i = 0; i < count; ++i) free(strings[i]);
  free(strings);
}

/* s2ft_checkpoint_write's progress callback into an
 * org.s2ft.WriteOptions.Progress, on the calling thread. After the listener
 * throws, later reports are skipped and the exception reaches the caller. */
typedef struct s2ft_java_progress_state {
  JNIEnv *jenv;
  jobject listener;
  jmethodID update;
} s2ft_java_progress_state;

static void s2ft_java_progress(void *user, uint64_t done, uint64_t total) {
  s2ft_java_progress_state *p = (s2ft_java_progress_state *)user;
  if ((*p->jenv)->ExceptionCheck(p->jenv)) return;
  (*p->jenv)->CallVoidMethod(p->jenv, p->listener, p->update, (jlong)done, (jlong)total);
}

/* Fills `t` from an org.s2ft.Tensor (fields buffer, array, address, dtype,
 * deviceType, deviceId, shape, strides, byteOffset, owner). Returns 0 with
 * a pending Java exception on failure (also for a view of a closed
 * checkpoint). */
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
  jobject owner = s2ft_java_object_field(jenv, cls, jt, "owner", "Lorg/s2ft/NativeHandle;");
  jlong dims[S2FT_MAX_DIMS], steps[S2FT_MAX_DIMS];
  int64_t shape64[S2FT_MAX_DIMS];
  jsize ndim, i;
  void *data = NULL;
  s2ft_status st;
  if ((*jenv)->ExceptionCheck(jenv)) return 0;
  if (owner != NULL && s2ft_java_closed(jenv, owner)) {
    s2ft_java_throw(jenv, "java/lang/IllegalStateException",
                    "the tensor is a view of a closed checkpoint (close models and use views before the checkpoint)");
    return 0;
  }
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
S2FT_JAVA_HANDLE(s2ft_checkpoint)
S2FT_JAVA_HANDLE(s2ft_sparse_set)
S2FT_JAVA_HANDLE(s2ft_spiel)

/* s2ft_lift_refresh: the new set becomes the result (its kept count goes
 * into a nullable long[]). */
%typemap(in, numinputs=0) s2ft_sparse_set **new_set (s2ft_sparse_set *handle = NULL) %{ $1 = &handle; %}
%typemap(argout) s2ft_sparse_set **new_set %{ $result = (jlong)(intptr_t)handle$argnum; %}

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

/* s2ft_sparse_set_create: (indices, count) from one long[]. */
%apply (const int64_t *lines, int64_t n_lines) { (const int64_t *indices, int64_t count) };

/* s2ft_sparse_set_indices: (out, capacity) from a long[] whose length is the
 * capacity (it must hold the set's count). */
%typemap(jni) (int64_t *out, int64_t capacity) "jlongArray"
%typemap(jtype) (int64_t *out, int64_t capacity) "long[]"
%typemap(jstype) (int64_t *out, int64_t capacity) "long[]"
%typemap(javain) (int64_t *out, int64_t capacity) "$javainput"
%typemap(in) (int64_t *out, int64_t capacity) %{
  $1 = $input == NULL ? NULL : ($1_ltype)(*jenv)->GetLongArrayElements(jenv, $input, NULL);
  if ($input != NULL && $1 == NULL) return $null;
  $2 = $input == NULL ? 0 : (int64_t)(*jenv)->GetArrayLength(jenv, $input);
%}
%typemap(argout) (int64_t *out, int64_t capacity) %{ %}  /* not RESULT_OUT's argout for `out` */
%typemap(freearg) (int64_t *out, int64_t capacity) %{
  if ($1 != NULL) (*jenv)->ReleaseLongArrayElements(jenv, $input, (jlong *)$1, 0);
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
S2FT_JAVA_COUNT_QUERY(int64_t, indices, count, jlongArray, long[], jlong, Long)  /* s2ft_lift_select */
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
S2FT_JAVA_RESULT_OUT(int32_t, reselected) /* s2ft_spiel_step: 1 when the set changed */

%define S2FT_JAVA_ARRAY_OUT(CTYPE, JARRAY, JTYPE, JELEM, KIND, NAME)
%typemap(jni) CTYPE *NAME "JARRAY"
%typemap(jtype) CTYPE *NAME "JTYPE"
%typemap(jstype) CTYPE *NAME "JTYPE"
%typemap(javain) CTYPE *NAME "$javainput"
%typemap(in) CTYPE *NAME (CTYPE value = 0) %{ $1 = $input == NULL ? NULL : &value; %}
%typemap(argout) CTYPE *NAME %{
  if ($input != NULL && !(*jenv)->ExceptionCheck(jenv)) {
    JELEM v = (JELEM)value$argnum;
    (*jenv)->Set##KIND##ArrayRegion(jenv, $input, 0, 1, &v);
  }
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
S2FT_JAVA_ARRAY_OUT(int64_t, jlongArray, long[], jlong, Long, kept)  /* s2ft_lift_refresh */
S2FT_JAVA_ARRAY_OUT(double, jdoubleArray, double[], jdouble, Double, rate)  /* s2ft_spiel_rate */
/* s2ft_adapter_sparse: the fingerprint; s2ft_adapter_sparse_info: the weight
 * mask and the entry count; s2ft_sorsa_regularizer(_step): the value. */
S2FT_JAVA_ARRAY_OUT(uint64_t, jlongArray, long[], jlong, Long, fingerprint)
S2FT_JAVA_ARRAY_OUT(uint32_t, jlongArray, long[], jlong, Long, weights)
S2FT_JAVA_ARRAY_OUT(int64_t, jlongArray, long[], jlong, Long, entries)
S2FT_JAVA_ARRAY_OUT(double, jdoubleArray, double[], jdouble, Double, value)
/* s2ft_adapter_low_rank: the rank (its fingerprint and the low-rank info's
 * mask and count use the typemaps above). */
S2FT_JAVA_ARRAY_OUT(int64_t, jlongArray, long[], jlong, Long, rank)

/* s2ft_adapter_sparse: the indices and deltas written into nullable arrays
 * (org.s2ft.Adapter passes a capacity no larger than their lengths). */
%define S2FT_JAVA_ARRAY_BUFFER(CTYPE, JARRAY, JTYPE, JELEM, KIND, NAME)
%typemap(jni) CTYPE *NAME "JARRAY"
%typemap(jtype) CTYPE *NAME "JTYPE"
%typemap(jstype) CTYPE *NAME "JTYPE"
%typemap(javain) CTYPE *NAME "$javainput"
%typemap(in) CTYPE *NAME %{
  $1 = $input == NULL ? NULL : ($1_ltype)(*jenv)->Get##KIND##ArrayElements(jenv, $input, NULL);
  if ($input != NULL && $1 == NULL) return $null;
%}
%typemap(freearg) CTYPE *NAME %{
  if ($1 != NULL) (*jenv)->Release##KIND##ArrayElements(jenv, $input, (JELEM *)$1, 0);
%}
%enddef
S2FT_JAVA_ARRAY_BUFFER(int64_t, jlongArray, long[], jlong, Long, indices)
S2FT_JAVA_ARRAY_BUFFER(float, jfloatArray, float[], jfloat, Float, deltas)

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

/* ---- checkpoints, models over them, adapter metadata -------------------------- */

/* Strings the library owns (const char **): a nullable byte[][] holder whose
 * element 0 receives the UTF-8 bytes (null for NULL); Java decodes them. */
%typemap(jni) const char ** "jobjectArray"
%typemap(jtype) const char ** "byte[][]"
%typemap(jstype) const char ** "byte[][]"
%typemap(javain) const char ** "$javainput"
%typemap(in) const char ** (const char *str = NULL) %{ $1 = $input == NULL ? NULL : &str; %}
%typemap(argout) const char ** %{ s2ft_java_hold(jenv, $input, s2ft_java_bytes(jenv, str$argnum)); %}

/* Metadata keys and values in: byte[] (UTF-8; null for NULL), so that any
 * Unicode text reaches the library as UTF-8. */
%define S2FT_JAVA_UTF8_IN(NAME)
%typemap(jni) const char *NAME "jbyteArray"
%typemap(jtype) const char *NAME "byte[]"
%typemap(jstype) const char *NAME "byte[]"
%typemap(javain) const char *NAME "$javainput"
%typemap(in) const char *NAME (int failed = 0) %{
  $1 = s2ft_java_utf8(jenv, $input, &failed);
  if (failed) return $null;
%}
%typemap(freearg) const char *NAME %{ free((void *)$1); %}
%enddef
S2FT_JAVA_UTF8_IN(key)
S2FT_JAVA_UTF8_IN(value)

/* Arrays of strings (paths, tensor names): String[]. */
%typemap(jni) const char *const * "jobjectArray"
%typemap(jtype) const char *const * "String[]"
%typemap(jstype) const char *const * "String[]"
%typemap(javain) const char *const * "$javainput"
%typemap(in) const char *const * (char **strings = NULL, jsize n_strings = 0) %{
  strings = s2ft_java_strings(jenv, $input, &n_strings);
  if ((*jenv)->ExceptionCheck(jenv)) {
    s2ft_java_strings_free(strings, n_strings);
    return $null;
  }
  $1 = (const char *const *)strings;
%}
%typemap(freearg) const char *const * %{ s2ft_java_strings_free(strings$argnum, n_strings$argnum); %}

/* s2ft_checkpoint_write: the replacements from a Tensor[], as the gradients. */
%apply (const s2ft_tensor *grads, int64_t n_grads) { (const s2ft_tensor *replacements, int64_t n_replace) };

/* s2ft_checkpoint_tensor_info: rank, extents (a nullable long[] whose length
 * is the capacity) and size. */
S2FT_JAVA_ARRAY_OUT(int32_t, jintArray, int[], jint, Int, ndim)
S2FT_JAVA_ARRAY_OUT(uint64_t, jlongArray, long[], jlong, Long, nbytes)
%typemap(jni) (int64_t *shape, int32_t shape_capacity) "jlongArray"
%typemap(jtype) (int64_t *shape, int32_t shape_capacity) "long[]"
%typemap(jstype) (int64_t *shape, int32_t shape_capacity) "long[]"
%typemap(javain) (int64_t *shape, int32_t shape_capacity) "$javainput"
%typemap(in) (int64_t *shape, int32_t shape_capacity) %{
  $1 = $input == NULL ? NULL : ($1_ltype)(*jenv)->GetLongArrayElements(jenv, $input, NULL);
  if ($input != NULL && $1 == NULL) return $null;
  $2 = $input == NULL ? 0 : (int32_t)(*jenv)->GetArrayLength(jenv, $input);
%}
%typemap(freearg) (int64_t *shape, int32_t shape_capacity) %{
  if ($1 != NULL) (*jenv)->ReleaseLongArrayElements(jenv, $input, (jlong *)$1, 0);
%}

/* s2ft_checkpoint_tensor_data: the bytes as a direct ByteBuffer in a
 * ByteBuffer[] holder (null for no bytes); above 2 GiB a ByteBuffer cannot
 * hold them (IllegalArgumentException). */
%typemap(jni) (const void **data, uint64_t *nbytes) "jobjectArray"
%typemap(jtype) (const void **data, uint64_t *nbytes) "java.nio.ByteBuffer[]"
%typemap(jstype) (const void **data, uint64_t *nbytes) "java.nio.ByteBuffer[]"
%typemap(javain) (const void **data, uint64_t *nbytes) "$javainput"
%typemap(in) (const void **data, uint64_t *nbytes) (const void *bytes = NULL, uint64_t size = 0) %{
  $1 = &bytes;
  $2 = &size;
%}
%typemap(argout) (const void **data, uint64_t *nbytes) %{
  if (!(*jenv)->ExceptionCheck(jenv) && bytes$argnum != NULL && size$argnum > 0) {
    if (size$argnum > (uint64_t)INT32_MAX)
      s2ft_java_throw(jenv, "java/lang/IllegalArgumentException", "s2ft: the tensor's data is larger than a ByteBuffer (2 GiB)");
    else
      s2ft_java_hold(jenv, $input, (*jenv)->NewDirectByteBuffer(jenv, (void *)bytes$argnum, (jlong)size$argnum));
  }
%}

/* s2ft_checkpoint_tensor (through s2ft_java_checkpoint_tensor below, since
 * s2ft_adapter_delta also has an `s2ft_tensor *out`): the view as a new
 * org.s2ft.Tensor in a Tensor[] holder. */
%typemap(jni) s2ft_java_view * "jobjectArray"
%typemap(jtype) s2ft_java_view * "org.s2ft.Tensor[]"
%typemap(jstype) s2ft_java_view * "org.s2ft.Tensor[]"
%typemap(javain) s2ft_java_view * "$javainput"
%typemap(in) s2ft_java_view * (s2ft_tensor view) %{
  memset(&view, 0, sizeof view);
  $1 = &view;
%}
%typemap(argout) s2ft_java_view * %{
  if (!(*jenv)->ExceptionCheck(jenv)) s2ft_java_hold(jenv, $input, s2ft_java_tensor_out(jenv, &view$argnum));
%}

/* s2ft_model_layer: the seven weights (q, k, v, o, gate, up, down; null where
 * the model holds none) as new Tensors in a Tensor[7]. */
%typemap(jni) s2ft_layer_weights *out "jobjectArray"
%typemap(jtype) s2ft_layer_weights *out "org.s2ft.Tensor[]"
%typemap(jstype) s2ft_layer_weights *out "org.s2ft.Tensor[]"
%typemap(javain) s2ft_layer_weights *out "$javainput"
%typemap(in) s2ft_layer_weights *out (s2ft_layer_weights views) %{
  memset(&views, 0, sizeof views);
  $1 = &views;
%}
%typemap(argout) s2ft_layer_weights *out %{
  if (!(*jenv)->ExceptionCheck(jenv) && $input != NULL) {
    const s2ft_tensor *all[7];
    jsize i;
    all[0] = views$argnum.q; all[1] = views$argnum.k; all[2] = views$argnum.v; all[3] = views$argnum.o;
    all[4] = views$argnum.gate; all[5] = views$argnum.up; all[6] = views$argnum.down;
    for (i = 0; i < 7 && i < (*jenv)->GetArrayLength(jenv, $input); ++i) {
      jobject t;
      if (all[i] == NULL) continue;
      t = s2ft_java_tensor_out(jenv, all[i]);
      if (t == NULL) break;
      (*jenv)->SetObjectArrayElement(jenv, $input, i, t);
      (*jenv)->DeleteLocalRef(jenv, t);
    }
  }
%}

/* Options structs come from the org.s2ft option objects: the C defaults
 * first (..._options_init), then the fields the Java object sets. */
%typemap(jni) const s2ft_checkpoint_write_options *opts "jobject"
%typemap(jtype) const s2ft_checkpoint_write_options *opts "org.s2ft.WriteOptions"
%typemap(jstype) const s2ft_checkpoint_write_options *opts "org.s2ft.WriteOptions"
%typemap(javain) const s2ft_checkpoint_write_options *opts "$javainput"
%typemap(in) const s2ft_checkpoint_write_options *opts (s2ft_checkpoint_write_options wopts, char **excl = NULL, jsize n_excl = 0, s2ft_java_progress_state pstate) %{
  {
    s2ft_status st = s2ft_checkpoint_write_options_init(&wopts, S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION);
    if (st != S2FT_OK) {
      s2ft_java_throw_status(jenv, st);
      return $null;
    }
  }
  if ($input != NULL) {
    jclass cls = (*jenv)->GetObjectClass(jenv, $input);
    jfieldID copy = (*jenv)->GetFieldID(jenv, cls, "copyOtherFiles", "Z");
    jobjectArray names = (jobjectArray)s2ft_java_object_field(jenv, cls, $input, "exclude", "[Ljava/lang/String;");
    jobject listener = s2ft_java_object_field(jenv, cls, $input, "progress", "Lorg/s2ft/WriteOptions$Progress;");
    wopts.max_shard_bytes = (uint64_t)s2ft_java_long_field(jenv, cls, $input, "maxShardBytes");
    if (copy != NULL) wopts.copy_other_files = (*jenv)->GetBooleanField(jenv, $input, copy) ? 1 : 0;
    if ((*jenv)->ExceptionCheck(jenv)) return $null;
    if (listener != NULL) {
      pstate.jenv = jenv;
      pstate.listener = listener;
      pstate.update = (*jenv)->GetMethodID(jenv, (*jenv)->GetObjectClass(jenv, listener), "update", "(JJ)V");
      if (pstate.update == NULL) return $null;
      wopts.progress = s2ft_java_progress;
      wopts.progress_user = &pstate;
    }
    excl = s2ft_java_strings(jenv, names, &n_excl);
    if ((*jenv)->ExceptionCheck(jenv)) {
      s2ft_java_strings_free(excl, n_excl);
      return $null;
    }
    wopts.exclude = (const char *const *)excl;
    wopts.n_exclude = (int64_t)n_excl;
  }
  $1 = &wopts;
%}
%typemap(freearg) const s2ft_checkpoint_write_options *opts %{ s2ft_java_strings_free(excl$argnum, n_excl$argnum); %}

%typemap(jni) const s2ft_peft_export_options *opts "jobject"
%typemap(jtype) const s2ft_peft_export_options *opts "org.s2ft.PeftExportOptions"
%typemap(jstype) const s2ft_peft_export_options *opts "org.s2ft.PeftExportOptions"
%typemap(javain) const s2ft_peft_export_options *opts "$javainput"
%typemap(in) const s2ft_peft_export_options *opts (s2ft_peft_export_options popts, char *base_name = NULL) %{
  {
    s2ft_status st = s2ft_peft_export_options_init(&popts, S2FT_PEFT_EXPORT_OPTIONS_VERSION);
    if (st != S2FT_OK) {
      s2ft_java_throw_status(jenv, st);
      return $null;
    }
  }
  if ($input != NULL) {
    jclass cls = (*jenv)->GetObjectClass(jenv, $input);
    jfieldID scale = (*jenv)->GetFieldID(jenv, cls, "scale", "D");
    jbyteArray name = (jbyteArray)s2ft_java_object_field(jenv, cls, $input, "baseModelNameOrPath", "[B");
    int failed = 0;
    if (scale != NULL) popts.scale = (double)(*jenv)->GetDoubleField(jenv, $input, scale);
    if ((*jenv)->ExceptionCheck(jenv)) return $null;
    base_name = s2ft_java_utf8(jenv, name, &failed);
    if (failed) return $null;
    popts.base_model_name_or_path = base_name;
  }
  $1 = &popts;
%}
%typemap(freearg) const s2ft_peft_export_options *opts %{ free(base_name$argnum); %}

/* The structs behind those typemaps, and the calls they replace. */
%ignore s2ft_checkpoint_write_options;
%ignore s2ft_checkpoint_write_options_init;
%ignore s2ft_peft_export_options;
%ignore s2ft_peft_export_options_init;
%ignore s2ft_checkpoint_tensor;

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

/* s2ft_checkpoint_tensor under its own type for the view's typemap. */
%{
typedef s2ft_tensor s2ft_java_view;
%}
typedef struct s2ft_tensor s2ft_java_view;
%inline %{
/* s2ft_checkpoint_tensor, with the view returned as an org.s2ft.Tensor. */
s2ft_status s2ft_java_checkpoint_tensor(s2ft_checkpoint *ckpt, const char *name, s2ft_java_view *view) {
  return s2ft_checkpoint_tensor(ckpt, name, view);
}
%}
