package s2ft

import (
	"fmt"
	"unsafe"

	"s2ft.dev/s2ft/internal/capi"
)

// Tensor is an f32 (or raw) array described to the library by an
// s2ft_tensor descriptor. Tensors made by NewTensor and FromSlice own C
// memory (the library may keep pointers to it, e.g. in a Model) and must be
// closed; Data gives a Go slice over that memory (zero-copy). FromPointer
// wraps memory owned elsewhere, e.g. CUDA device memory.
type Tensor struct {
	desc  capi.S2ft_tensor
	data  uintptr
	owned bool
	shape []int64
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
	return &Tensor{desc: desc, data: uintptr(data), shape: shp}, nil
}

// Data is the tensor's elements as a Go slice over its memory (f32 CPU only).
func (t *Tensor) Data() []float32 {
	n := int64(1)
	for _, d := range t.shape {
		n *= d
	}
	if t.data == 0 || n == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(t.data)), n) //nolint:govet // C memory
}

// Shape returns a copy of the tensor's shape.
func (t *Tensor) Shape() []int64 { return append([]int64(nil), t.shape...) }

// Close frees the descriptor and, for NewTensor/FromSlice, the memory.
// Idempotent. Do not close a tensor a Model still uses.
func (t *Tensor) Close() {
	if t == nil || t.desc == nil {
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
