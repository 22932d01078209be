// Package s2ft is the Go binding of libs2ft (Structured Sparse Fine-Tuning).
//
// Every fallible call returns an error of type *Error carrying the library's
// status and message. Handles (Context, Selection, Adapter, Model) own C
// objects: call Close (idempotent) when done, children before their Context;
// there are no finalizers. Handles are not safe for concurrent use.
package s2ft

import (
	"fmt"
	"runtime"

	"s2ft.dev/s2ft/internal/capi"
)

// Status codes (S2FT_ERR_*).
const (
	OK                 = 0
	ErrInvalidArgument = -1
	ErrShape           = -2
	ErrDtype           = -3
	ErrDevice          = -4
	ErrOutOfMemory     = -5
	ErrIO              = -6
	ErrFormat          = -7
	ErrUnsupported     = -8
	ErrState           = -9
	ErrBackend         = -10
	ErrInternal        = -11
)

// Targets, index flags and other constants of the C API.
const (
	TargetO    = 0
	TargetV    = 1
	TargetDown = 2
	TargetUp   = 3

	IndexUnits    = 0
	IndexLines    = 1
	IndexBase     = 0
	IndexPermuted = 2

	DeviceCPU  = 1
	DeviceCUDA = 2
	F32        = 0
	F16        = 1
	BF16       = 2

	DeltaPathAuto   = 0 // CUDA: time both paths once per shape, keep the faster
	DeltaPathDense  = 1 // gather the lines, then a dense GEMM
	DeltaPathSparse = 2 // the delta as CSR through cuSPARSE SpMM (CUDA only)

	AccumulateDW = 1
	AccumulateDX = 2
	ApplyForce   = 1
)

// TargetBit is the bit of a target in a target mask.
func TargetBit(t int) uint32 { return 1 << uint(t) }

// The seven projection weights of a layer (S2FT_WEIGHT_*), in one id space
// with the targets (the four targets keep their ids). Sparse adapter entries
// (Adapter.SetSparse) name weights by these.
const (
	WeightO    = 0 // o_proj    [d_model, n_heads*head_dim]
	WeightV    = 1 // v_proj    [n_kv_heads*head_dim, d_model]
	WeightDown = 2 // down_proj [d_model, d_ff]
	WeightUp   = 3 // up_proj   [d_ff, d_model]
	WeightQ    = 4 // q_proj    [n_heads*head_dim, d_model]
	WeightK    = 5 // k_proj    [n_kv_heads*head_dim, d_model]
	WeightGate = 6 // gate_proj [d_ff, d_model]
	NumWeights = 7
)

// WeightBit is the bit of a weight in a weight mask (Adapter.SparseInfo).
func WeightBit(w int) uint32 { return 1 << uint(w) }

// Error is a failed libs2ft call: Status is the S2FT_ERR_* code and Message
// the library's message (s2ft_last_error), which names the argument.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("s2ft: %s: %s", StatusString(e.Status), e.Message)
}

// call runs one C call and turns its status into nil or an *Error. The
// goroutine is locked to its OS thread so that s2ft_last_error (which is
// thread-local) is read on the thread that failed.
func call(f func() int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return check(f())
}

func check(status int) error {
	if status >= 0 {
		return nil
	}
	return &Error{Status: status, Message: capi.S2ft_last_error()}
}

// StatusString names a status, e.g. "invalid argument".
func StatusString(status int) string { return capi.S2ft_status_string(status) }

// Version is the loaded library's version number (major*10000+minor*100+patch).
func Version() uint { return capi.S2ft_version() }

// VersionString is the loaded library's version, e.g. "0.1.0".
func VersionString() string { return capi.S2ft_version_string() }

// LiveHandles counts library objects not yet destroyed (for leak checks).
func LiveHandles() int64 { return capi.S2ft_live_handles() }
