package s2ft

import (
	"s2ft.dev/s2ft/internal/capi"
)

// LIFT's low-rank methods (S2FT_LIFT_*).
const (
	LiftExact      = 0 // a full SVD
	LiftRandomized = 1 // a randomized SVD (oversampling, power iterations, seed)
)

// SparseSet is the trained entries of one [rows, cols] weight for
// unstructured sparse fine-tuning (LIFT, SpIEL): strictly ascending flat
// indices r*cols + c, held on a context's device. Close it before the
// context it was made with.
type SparseSet struct {
	p capi.Struct_SS_s2ft_sparse_set
}

// NewSparseSet makes a set from flat indices (copied): strictly ascending,
// in [0, rows*cols).
func NewSparseSet(ctx *Context, rows, cols int64, indices []int64) (*SparseSet, error) {
	var first *int64
	if len(indices) > 0 {
		first = &indices[0]
	}
	cell := capi.New_sparse_set_out()
	defer capi.Delete_sparse_set_out(cell)
	if err := call(func() int {
		return capi.S2ft_sparse_set_create(ctx.p, rows, cols, first, int64(len(indices)), cell)
	}); err != nil {
		return nil, err
	}
	return &SparseSet{capi.Sparse_set_out_value(cell)}, nil
}

// Close destroys the set (idempotent).
func (s *SparseSet) Close() {
	if s != nil && s.p != nil {
		capi.S2ft_sparse_set_destroy(s.p)
		s.p = nil
	}
}

// Count is the number of entries.
func (s *SparseSet) Count() (int64, error) {
	var n int64
	err := call(func() int { return capi.S2ft_sparse_set_count(s.p, &n) })
	return n, err
}

// Shape is the [rows, cols] of the weight the set was made for.
func (s *SparseSet) Shape() (rows, cols int64, err error) {
	err = call(func() int { return capi.S2ft_sparse_set_shape(s.p, &rows, &cols) })
	return rows, cols, err
}

// Indices returns the flat indices, ascending.
func (s *SparseSet) Indices() ([]int64, error) {
	n, err := s.Count()
	if err != nil {
		return nil, err
	}
	out := make([]int64, n)
	err = call(func() int { return capi.S2ft_sparse_set_indices(s.p, &out[0], n) })
	return out, err
}

// Backward is the backward of y = x W^T for a weight trained at the set's
// entries: grad[n] = sum_t dy[t, r_n] x[t, c_n] (f32 [count]; the dense dW
// is never formed) and, when dx is not nil, dx = dy W (w is needed then).
// flags: AccumulateDW adds into grad, AccumulateDX into dx.
func (s *SparseSet) Backward(ctx *Context, x, dy, w, dx, grad *Tensor, flags uint32) error {
	return call(func() int {
		return capi.S2ft_backward_sparse(ctx.p, s.p, x.ptr(), dy.ptr(), w.ptr(), dx.ptr(), grad.ptr(), uint(flags))
	})
}

// LiftOptions configures LiftSelect. Exactly one of Count and Density is
// set (the other 0).
type LiftOptions struct {
	Rank            int32   // r of W_r, in [1, min(rows, cols)]
	Count           int64   // the number of entries, or 0
	Density         float64 // the fraction of entries in (0, 1], or 0
	Smallest        bool    // the smallest |W_r| instead of the largest
	Method          int32   // LiftExact or LiftRandomized
	Oversampling    int32   // randomized: p (the library's default is 10)
	PowerIterations int32   // randomized: q (the library's default is 2)
	Seed            uint64  // randomized: the sketch's seed
}

// DefaultLiftOptions returns the library's defaults for the given rank and
// count (exact method, largest entries, p = 10, q = 2, seed 0).
func DefaultLiftOptions(rank int32, count int64) LiftOptions {
	return LiftOptions{Rank: rank, Count: count, Method: LiftExact, Oversampling: 10, PowerIterations: 2}
}

// LiftSelect returns LIFT's principal weights of w: the flat indices
// (ascending) of the entries of largest (or smallest) magnitude in w's
// rank-r approximation.
func LiftSelect(ctx *Context, w *Tensor, opts LiftOptions) ([]int64, error) {
	n, err := liftOptions(opts)
	if err != nil {
		return nil, err
	}
	defer capi.DeleteS2ft_lift_options(n)
	var count int64
	if err := call(func() int { return capi.S2ft_lift_select(ctx.p, w.ptr(), n, nil, 0, &count) }); err != nil {
		return nil, err
	}
	out := make([]int64, count)
	if count == 0 {
		return out, nil
	}
	err = call(func() int { return capi.S2ft_lift_select(ctx.p, w.ptr(), n, &out[0], count, &count) })
	return out[:count], err
}

// liftOptions is the C struct of opts (the caller deletes it).
func liftOptions(opts LiftOptions) (capi.S2ft_lift_options, error) {
	n := capi.NewS2ft_lift_options()
	if err := call(func() int { return capi.S2ft_lift_options_init(n, uint(capi.S2FT_LIFT_OPTIONS_VERSION)) }); err != nil {
		capi.DeleteS2ft_lift_options(n)
		return nil, err
	}
	n.SetRank(int(opts.Rank))
	n.SetCount(opts.Count)
	n.SetDensity(opts.Density)
	order := capi.S2FT_ORDER_LARGEST
	if opts.Smallest {
		order = capi.S2FT_ORDER_SMALLEST
	}
	n.SetOrder(order)
	n.SetMethod(int(opts.Method))
	n.SetOversampling(int(opts.Oversampling))
	n.SetPower_iterations(int(opts.PowerIterations))
	n.SetSeed(opts.Seed)
	return n, nil
}

// LiftRefresh is LIFT's mask refresh: it selects the principal weights of
// the current weight of sparse parameter paramIndex of opt (as LiftSelect
// with opts) and moves the parameter to them (as Optimizer.SparseReindex):
// entries in both sets keep their optimizer state, new ones start at zero,
// and the weight is not changed. It returns a new set of the selected
// entries (the caller closes it; rebuild the backward with it) and the
// number of them that were in the parameter before. On failure nothing
// changes.
func LiftRefresh(ctx *Context, opt *Optimizer, paramIndex int64, opts LiftOptions) (*SparseSet, int64, error) {
	weight, err := opt.param(paramIndex)
	if err != nil {
		return nil, 0, err
	}
	n, err := liftOptions(opts)
	if err != nil {
		return nil, 0, err
	}
	defer capi.DeleteS2ft_lift_options(n)
	cell := capi.New_sparse_set_out()
	defer capi.Delete_sparse_set_out(cell)
	var kept int64
	if err := call(func() int {
		return capi.S2ft_lift_refresh(ctx.p, opt.p, paramIndex, weight.ptr(), n, cell, &kept)
	}); err != nil {
		return nil, 0, err
	}
	return &SparseSet{capi.Sparse_set_out_value(cell)}, kept, nil
}

// LiftCountForLoraRank is (rows + cols) * loraRank, at most rows * cols:
// LIFT's entry count parameter-matched to LoRA of that rank.
func LiftCountForLoraRank(rows, cols, loraRank int64) int64 {
	return capi.S2ft_lift_count_for_lora_rank(rows, cols, loraRank)
}
