package capi

// Progress callbacks from s2ft_checkpoint_write into Go. The C side
// (s2ft_go_progress in s2ft_go.i) passes back the handle it was given, an
// integer, so no Go pointer crosses into C.

/*
#include <stdint.h>
*/
import "C"

import "sync"

type progressEntry struct {
	f     func(done, total uint64)
	panic interface{} // a panic of f, held until UnregisterProgress
}

var (
	progressMu   sync.Mutex
	progressNext uintptr
	progressFns  = map[uintptr]*progressEntry{}
)

// RegisterProgress returns a nonzero handle for f, to pass to
// S2ft_go_checkpoint_write; UnregisterProgress it after the call.
func RegisterProgress(f func(done, total uint64)) uintptr {
	progressMu.Lock()
	defer progressMu.Unlock()
	progressNext++
	progressFns[progressNext] = &progressEntry{f: f}
	return progressNext
}

// UnregisterProgress forgets a handle and returns what its function
// panicked with, if it did (later reports were skipped), for the caller to
// panic again now that the C call has returned.
func UnregisterProgress(handle uintptr) interface{} {
	progressMu.Lock()
	defer progressMu.Unlock()
	e := progressFns[handle]
	delete(progressFns, handle)
	if e == nil {
		return nil
	}
	return e.panic
}

//export s2ftGoProgress
func s2ftGoProgress(handle C.uintptr_t, done, total C.uint64_t) {
	progressMu.Lock()
	e := progressFns[uintptr(handle)]
	progressMu.Unlock()
	if e == nil || e.panic != nil {
		return
	}
	// A panic must not unwind through the library's C frames.
	defer func() {
		if r := recover(); r != nil {
			e.panic = r
		}
	}()
	e.f(uint64(done), uint64(total))
}
