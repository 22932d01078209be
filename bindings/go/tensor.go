package s2ft

import (
	"fmt"
	"math"
	"unsafe"

	"s2ft.dev/s2ft/internal/capi"
)

// Tensor is an f32 (or raw) array described to the library by an
// s2ft_tensor descriptor. Tensors made by NewTensor and FromSlice own C
// memory (the library may keep pointers to it, e.g. in a Model) and must be
// closed; Data gives a Go slice over that memory (zero-copy). FromPointer
// wraps memory owned elsewhere, e.g. CUDA device memory.
//
// Views of memory the library holds (Checkpoint.Tensor, Model.Layer) belong
// to their checkpoint or model: Close does nothing, and they stay valid until
// the checkpoint (or model) is closed. They keep a reference to it; after it
// is closed, Data returns nil and the library refuses them (a NULL tensor).
type Tensor struct {
	desc     capi.S2ft_tensor
	data     uintptr
	owned    bool
	borrowed bool // a view owned by a checkpoint or model: Close does nothing
	dtype    int
	shape    []int64
	owner    *Checkpoint // the checkpoint whose memory a view describes
}

// NewTensor allocates a zero-filled compact row-major f32 CPU tensor.
func NewTensor(shape ...int64) (*Tensor, error) {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	data := capi.S2ft_go_alloc(n * 4)
	if data == 0 {
		return nil, &Error{Status: ErrOutOfMemory, Message: "tensor allocation failed"}
	}
	t, err := FromPointer(unsafe.Pointer(data), F32, DeviceCPU, 0, shape...) //nolint:govet // C memory
	if err != nil {
		capi.S2ft_go_free(data)
		return nil, err
	}
	t.owned = true
	return t, nil
}

// FromSlice allocates a tensor in C memory holding a copy of data.
func FromSlice(data []float32, shape ...int64) (*Tensor, error) {
	t, err := NewTensor(shape...)
	if err != nil {
		return nil, err
	}
	if len(data) < len(t.Data()) {
		t.Close()
		return nil, &Error{Status: ErrShape, Message: fmt.Sprintf("data has %d values, shape %v needs %d", len(data), shape, len(t.Data()))}
	}
	copy(t.Data(), data)
	return t, nil
}

// FromPointer describes compact memory owned by the caller (CPU or device).
func FromPointer(data unsafe.Pointer, dtype, deviceType, deviceID int, shape ...int64) (*Tensor, error) {
	if len(shape) < 1 || len(shape) > 4 {
		return nil, &Error{Status: ErrInvalidArgument, Message: fmt.Sprintf("tensor rank %d is outside 1..4", len(shape))}
	}
	desc := capi.S2ft_go_tensors_new(1)
	shp := append([]int64(nil), shape...)
	if err := call(func() int {
		return capi.S2ft_tensor_init(desc, uintptr(data), dtype, deviceType, deviceID, len(shp), &shp[0])
	}); err != nil {
		capi.S2ft_go_free(desc.Swigcptr())
		return nil, err
	}
	return &Tensor{desc: desc, data: uintptr(data), dtype: dtype, shape: shp}, nil
}

// viewOf describes a descriptor the library holds (not copied: the owner
// keeps it) as a borrowed Tensor.
func viewOf(desc capi.S2ft_tensor, owner *Checkpoint) *Tensor {
	n := capi.S2ft_go_tensor_ndim(desc)
	t := &Tensor{desc: desc, borrowed: true, dtype: capi.S2ft_go_tensor_dtype(desc), owner: owner}
	step := int64(1)
	compact := true
	for i := n - 1; i >= 0; i-- {
		d := capi.S2ft_go_tensor_dim(desc, i)
		if d != 1 && capi.S2ft_go_tensor_stride(desc, i) != step {
			compact = false
		}
		step *= d
	}
	for i := 0; i < n; i++ {
		t.shape = append(t.shape, capi.S2ft_go_tensor_dim(desc, i))
	}
	if compact {
		t.data = capi.S2ft_go_tensor_address(desc)
	}
	return t
}

// invalidate forgets a view whose owner is gone: Data returns nil and the
// library sees a NULL tensor.
func (t *Tensor) invalidate() {
	t.desc, t.data = nil, 0
}

// DType is the element type: F32, F16 or BF16.
func (t *Tensor) DType() int { return t.dtype }

// Uint16s is an F16 or BF16 tensor's raw elements as a slice over its memory
// (nil for F32, for a view whose owner is closed, or for a strided view).
func (t *Tensor) Uint16s() []uint16 {
	n := t.elements()
	if t.data == 0 || n == 0 || (t.dtype != F16 && t.dtype != BF16) {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(t.data)), n) //nolint:govet // C memory
}

// Float32s is a copy of a CPU tensor's elements as float32, F16 and BF16
// converted exactly (nil where Data and Uint16s are).
func (t *Tensor) Float32s() []float32 {
	if d := t.Data(); d != nil {
		return append([]float32(nil), d...)
	}
	bits := t.Uint16s()
	if bits == nil {
		return nil
	}
	out := make([]float32, len(bits))
	for i, b := range bits {
		if t.dtype == BF16 {
			out[i] = math.Float32frombits(uint32(b) << 16)
		} else {
			out[i] = halfToFloat32(b)
		}
	}
	return out
}

// halfToFloat32 converts an IEEE half-precision value exactly.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp, frac := uint32(h>>10)&0x1f, uint32(h&0x3ff)
	switch exp {
	case 0: // subnormal: frac * 2^-24
		return math.Float32frombits(sign | math.Float32bits(float32(frac)*(1.0/16777216)))
	case 31:
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	default:
		return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
	}
}

func (t *Tensor) elements() int64 {
	n := int64(1)
	for _, d := range t.shape {
		n *= d
	}
	return n
}

// Data is the tensor's elements as a Go slice over its memory (f32 CPU only;
// nil otherwise, and for a view whose owner is closed or that is strided).
func (t *Tensor) Data() []float32 {
	n := t.elements()
	if t.data == 0 || n == 0 || t.dtype != F32 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(t.data)), n) //nolint:govet // C memory
}

// Shape returns a copy of the tensor's shape.
func (t *Tensor) Shape() []int64 { return append([]int64(nil), t.shape...) }

// Close frees the descriptor and, for NewTensor/FromSlice, the memory.
// Idempotent. Do not close a tensor a Model still uses. A view of a
// checkpoint or model belongs to it: Close does nothing.
func (t *Tensor) Close() {
	if t == nil || t.desc == nil || t.borrowed {
		return
	}
	if t.owned {
		capi.S2ft_go_free(t.data)
	}
	capi.S2ft_go_free(t.desc.Swigcptr())
	t.desc, t.data = nil, 0
}

func (t *Tensor) ptr() capi.S2ft_tensor {
	if t == nil {
		return capi.SwigcptrS2ft_tensor(0)
	}
	return t.desc
}

// Slice names the trained lines of a weight (s2ft_slice).
type Slice struct {
	Axis    int // 0 columns (O, DOWN), 1 rows (V, UP)
	Begin   int64
	Count   int64
	Indices []int64 // nil: the range [Begin, Begin+Count)
}

// Columns is a slice of the given columns.
func Columns(idx ...int64) Slice { return Slice{Axis: 0, Count: int64(len(idx)), Indices: idx} }

// RowRange is the slice of rows [begin, begin+count).
func RowRange(begin, count int64) Slice { return Slice{Axis: 1, Begin: begin, Count: count} }

func (s Slice) native() capi.S2ft_slice {
	var p *int64
	if len(s.Indices) > 0 {
		p = &s.Indices[0]
	}
	return capi.S2ft_go_slice_new(s.Axis, s.Begin, s.Count, p)
}

// LayerWeights are one layer's weights; nil entries are left alone.
type LayerWeights struct {
	Q, K, V, O, Gate, Up, Down *Tensor
}

// nativeLayers builds a C array of s2ft_layer_weights; free it with capi.S2ft_go_free.
func nativeLayers(layers []LayerWeights) capi.S2ft_layer_weights {
	arr := capi.S2ft_go_layers_new(int64(len(layers)))
	for l, lw := range layers {
		for f, t := range []*Tensor{lw.Q, lw.K, lw.V, lw.O, lw.Gate, lw.Up, lw.Down} {
			if t != nil {
				capi.S2ft_go_layers_set(arr, int64(l), f, t.desc)
			}
		}
	}
	return arr
}
