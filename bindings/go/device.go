package s2ft

import (
	"fmt"
	"unsafe"

	"s2ft.dev/s2ft/internal/capi"
)

// DeviceCount is the number of devices of a kind (DeviceCPU, DeviceCUDA)
// this build of libs2ft can use: 1 for the CPU; for CUDA the devices
// present, or 0 without a CUDA backend or driver (not an error).
func DeviceCount(deviceType int) (int, error) {
	var n int32
	// SWIG shows int32_t* as *int; the C side writes one int32.
	err := call(func() int { return capi.S2ft_device_count(deviceType, (*int)(unsafe.Pointer(&n))) })
	return int(n), err
}

// Synchronize blocks until all work the context has queued is done and
// reports a device fault in it (ErrBackend). A no-op on a CPU context.
func (c *Context) Synchronize() error {
	return call(func() int { return capi.S2ft_context_synchronize(c.p) })
}

// WorkspaceNeeded is the most per-call scratch, in bytes, any call on this
// CUDA context has used so far (0 on a CPU context).
func (c *Context) WorkspaceNeeded() (uint64, error) {
	var n uint64
	err := call(func() int { return capi.S2ft_context_workspace_needed(c.p, (*int64)(unsafe.Pointer(&n))) })
	return n, err
}

// SetDeltaPath chooses the delta path of ForwardMixed on this context
// (DeltaPath*; default DeltaPathAuto). A CPU context has only
// DeltaPathDense (Auto means it); DeltaPathSparse there is ErrUnsupported.
func (c *Context) SetDeltaPath(path int) error {
	return call(func() int { return capi.S2ft_context_set_delta_path(c.p, path) })
}

// Stream is the CUDA stream (a cudaStream_t) the context queues its work
// on; nil on a CPU context and for the legacy default stream.
func (c *Context) Stream() (unsafe.Pointer, error) {
	var s uintptr
	err := call(func() int { return capi.S2ft_context_stream(c.p, &s) })
	return unsafe.Pointer(s), err //nolint:govet // a C pointer
}

// SetStream sets the CUDA stream (a cudaStream_t; nil: the legacy default
// stream) the context queues its work on. The stream must outlive its use
// by the context. A CPU context gives ErrUnsupported.
func (c *Context) SetStream(stream unsafe.Pointer) error {
	return call(func() int { return capi.S2ft_context_set_stream(c.p, uintptr(stream)) })
}

// SetWorkspace gives a CUDA context bytes of caller-owned device memory for
// per-call scratch (nil: back to the context's own). The memory must stay
// valid, and unused by the caller, while queued work may read it. A CPU
// context gives ErrUnsupported.
func (c *Context) SetWorkspace(workspace unsafe.Pointer, bytes uint64) error {
	return call(func() int { return capi.S2ft_context_set_workspace(c.p, uintptr(workspace), int64(bytes)) })
}

// Upload copies the adapter's lines and deltas to the device of a CUDA
// context now, so that later apply/switch/remove and ForwardMixed calls
// there copy nothing from the host. A no-op on a CPU context.
func (a *Adapter) Upload(ctx *Context) error {
	return call(func() int { return capi.S2ft_adapter_upload(ctx.p, a.p) })
}

// SparseDelta is a weight delta D [rows, cols] in CSR form held on a
// context's device: the path for deltas that are not whole rows or columns.
// Close it before the context it was made with.
type SparseDelta struct {
	p capi.Struct_SS_s2ft_sparse_delta
}

// NewSparseDelta creates a sparse delta from CSR arrays (copied): rowOffsets
// has rows+1 non-decreasing entries from 0 to nnz; colIndices and values
// have nnz entries, column indices strictly ascending within each row and
// in [0, cols), values finite.
func NewSparseDelta(ctx *Context, rows, cols int64, rowOffsets, colIndices []int64, values []float32) (*SparseDelta, error) {
	if rows < 0 || int64(len(rowOffsets)) != rows+1 {
		return nil, &Error{Status: ErrInvalidArgument, Message: fmt.Sprintf("NewSparseDelta: %d row offsets for %d rows", len(rowOffsets), rows)}
	}
	if len(colIndices) != len(values) {
		return nil, &Error{Status: ErrInvalidArgument, Message: fmt.Sprintf("NewSparseDelta: %d column indices for %d values", len(colIndices), len(values))}
	}
	var ci *int64
	var vp *float32
	if len(values) > 0 {
		ci, vp = &colIndices[0], &values[0]
	}
	cell := capi.New_sparse_delta_out()
	defer capi.Delete_sparse_delta_out(cell)
	if err := call(func() int {
		return capi.S2ft_sparse_delta_create(ctx.p, rows, cols, &rowOffsets[0], ci, vp, int64(len(values)), cell)
	}); err != nil {
		return nil, err
	}
	return &SparseDelta{capi.Sparse_delta_out_value(cell)}, nil
}

// SparseDeltaFromAdapter is the delta of an adapter's (layer, target) entry
// over the full weight shape, its lines in base order or (perm not nil) in
// that selection's permuted order; no entry gives nnz 0.
func SparseDeltaFromAdapter(ctx *Context, a *Adapter, layer, target int, perm *Selection) (*SparseDelta, error) {
	cell := capi.New_sparse_delta_out()
	defer capi.Delete_sparse_delta_out(cell)
	if err := call(func() int {
		return capi.S2ft_sparse_delta_from_adapter(ctx.p, a.p, layer, target, selectionPtr(perm), cell)
	}); err != nil {
		return nil, err
	}
	return &SparseDelta{capi.Sparse_delta_out_value(cell)}, nil
}

// Close destroys the sparse delta (idempotent).
func (d *SparseDelta) Close() {
	if d != nil && d.p != nil {
		capi.S2ft_sparse_delta_destroy(d.p)
		d.p = nil
	}
}

// Info returns the delta's shape and number of stored entries.
func (d *SparseDelta) Info() (rows, cols, nnz int64, err error) {
	err = call(func() int { return capi.S2ft_sparse_delta_info(d.p, &rows, &cols, &nnz) })
	return rows, cols, nnz, err
}

// Forward computes y += scale * x D^T for x [T, cols] and y [T, rows] on
// the context's device (the one the delta was made on); one dtype, f32
// arithmetic. Queued, not waited for, on a CUDA context.
func (d *SparseDelta) Forward(ctx *Context, scale float64, x, y *Tensor) error {
	return call(func() int { return capi.S2ft_sparse_delta_forward(ctx.p, d.p, scale, x.ptr(), y.ptr()) })
}
