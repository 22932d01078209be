package s2ft

import (
	"fmt"
	"math"
	"unsafe"

	"s2ft.dev/s2ft/internal/capi"
)

// ModelShape is the shape of a LLaMA-architecture decoder.
type ModelShape struct {
	NLayers, DModel, NHeads, NKVHeads, HeadDim, DFF int
}

func (s ModelShape) native() capi.S2ft_model_shape {
	n := capi.NewS2ft_model_shape()
	n.SetN_layers(s.NLayers)
	n.SetD_model(s.DModel)
	n.SetN_heads(s.NHeads)
	n.SetN_kv_heads(s.NKVHeads)
	n.SetHead_dim(s.HeadDim)
	n.SetD_ff(s.DFF)
	return n
}

// Check validates the shape with the library.
func (s ModelShape) Check() error {
	n := s.native()
	defer capi.DeleteS2ft_model_shape(n)
	return call(func() int { return capi.S2ft_model_shape_check(n) })
}

// Context binds the library to one backend and device.
type Context struct{ p capi.Struct_SS_s2ft_context }

// NewContext creates a CPU context with defaults.
func NewContext() (*Context, error) {
	cell := capi.New_context_out()
	defer capi.Delete_context_out(cell)
	if err := call(func() int { return capi.S2ft_context_create(capi.SwigcptrS2ft_context_options(0), cell) }); err != nil {
		return nil, err
	}
	return &Context{capi.Context_out_value(cell)}, nil
}

// NewContextOn creates a context on a device (DeviceCPU or DeviceCUDA) with
// numThreads BLAS threads (0: the BLAS default).
func NewContextOn(deviceType, deviceID, numThreads int) (*Context, error) {
	opts := capi.NewS2ft_context_options()
	defer capi.DeleteS2ft_context_options(opts)
	if err := call(func() int { return capi.S2ft_context_options_init(opts, uint(capi.S2FT_CONTEXT_OPTIONS_VERSION)) }); err != nil {
		return nil, err
	}
	opts.SetDevice_type(deviceType)
	opts.SetDevice_id(deviceID)
	opts.SetNum_threads(numThreads)
	cell := capi.New_context_out()
	defer capi.Delete_context_out(cell)
	if err := call(func() int { return capi.S2ft_context_create(opts, cell) }); err != nil {
		return nil, err
	}
	return &Context{capi.Context_out_value(cell)}, nil
}

// Close destroys the context (idempotent).
func (c *Context) Close() {
	if c != nil && c.p != nil {
		capi.S2ft_context_destroy(c.p)
		c.p = nil
	}
}

// ForwardPartial computes y = x W^T and saves x[:, S] into xSaved (may be nil).
func (c *Context) ForwardPartial(s Slice, x, w, y, xSaved *Tensor) error {
	sl := s.native()
	defer capi.S2ft_go_free(sl.Swigcptr())
	return call(func() int { return capi.S2ft_forward_partial(c.p, sl, x.ptr(), w.ptr(), y.ptr(), xSaved.ptr()) })
}

// BackwardPartial computes dx = dy W (dx may be nil) and the slice's weight gradient.
func (c *Context) BackwardPartial(s Slice, w, xIn, dy, dx, dwSlice *Tensor, flags uint) error {
	sl := s.native()
	defer capi.S2ft_go_free(sl.Swigcptr())
	return call(func() int {
		return capi.S2ft_backward_partial(c.p, sl, w.ptr(), xIn.ptr(), dy.ptr(), dx.ptr(), dwSlice.ptr(), flags)
	})
}

// SelectOptions configures Select; zero budgets keep the library's defaults.
type SelectOptions struct {
	Targets  uint32 // mask of TargetBit; 0 keeps the default O|DOWN
	Strategy int    // 0 random, 1 weight, 2 activation, 3 weight*act, 4 gradient
	Seed     uint64
	Count    [4]int64   // per target; a nonzero count replaces the ratio
	Ratio    [4]float64 // per target; a nonzero ratio replaces the default
	// Order (OrderLargest, OrderSmallest), Allocation (AllocatePerLayer,
	// AllocateGlobal) and HeadGranularity (HeadsByGroup, HeadsSingle):
	// the zero values are the library's defaults.
	Order, Allocation, HeadGranularity int
}

// Selection says which units of each layer are trained.
type Selection struct{ p capi.Struct_SS_s2ft_selection }

// Select chooses units to train (random strategy needs no statistics; see
// SelectWithStatistics for the others).
func Select(ctx *Context, shape ModelShape, opts SelectOptions) (*Selection, error) {
	return selectUnits(ctx, shape, opts, capi.SwigcptrStruct_SS_s2ft_statistics(0))
}

func selectUnits(ctx *Context, shape ModelShape, opts SelectOptions, stats capi.Struct_SS_s2ft_statistics) (*Selection, error) {
	ns := shape.native()
	defer capi.DeleteS2ft_model_shape(ns)
	no := capi.NewS2ft_select_options()
	defer capi.DeleteS2ft_select_options(no)
	if err := call(func() int { return capi.S2ft_select_options_init(no, 1) }); err != nil {
		return nil, err
	}
	if opts.Targets != 0 {
		no.SetTargets(uint(opts.Targets))
	}
	no.SetStrategy(opts.Strategy)
	no.SetSeed(opts.Seed)
	no.SetOrder(opts.Order)
	no.SetAllocation(opts.Allocation)
	no.SetHead_granularity(opts.HeadGranularity)
	ratio := unsafe.Slice((*float64)(unsafe.Pointer(no.GetRatio())), 4)
	count := unsafe.Slice((*int64)(unsafe.Pointer(no.GetCount())), 4)
	for t := 0; t < 4; t++ {
		if opts.Count[t] != 0 {
			count[t], ratio[t] = opts.Count[t], 0
		} else if opts.Ratio[t] != 0 {
			count[t], ratio[t] = 0, opts.Ratio[t]
		}
	}
	cell := capi.New_selection_out()
	defer capi.Delete_selection_out(cell)
	if err := call(func() int {
		return capi.S2ft_select(ctx.p, ns, no, stats, cell)
	}); err != nil {
		return nil, err
	}
	return &Selection{capi.Selection_out_value(cell)}, nil
}

// Close destroys the selection (idempotent).
func (s *Selection) Close() {
	if s != nil && s.p != nil {
		capi.S2ft_selection_destroy(s.p)
		s.p = nil
	}
}

// Indices returns the selected indices of (layer, target), ascending.
func (s *Selection) Indices(layer, target int, flags uint) ([]int64, error) {
	var n int64
	if err := call(func() int { return capi.S2ft_selection_indices(s.p, layer, target, flags, nil, 0, &n) }); err != nil {
		return nil, err
	}
	out := make([]int64, n)
	if n == 0 {
		return out, nil
	}
	err := call(func() int { return capi.S2ft_selection_indices(s.p, layer, target, flags, &out[0], n, &n) })
	return out, err
}

// Adapter is what fine-tuning changed: per (layer, target) lines and deltas,
// and free key/value metadata.
type Adapter struct {
	p        capi.Struct_SS_s2ft_adapter
	borrowed bool // loaded by Model.ApplyFiles and owned by the model
}

// NewAdapter creates an empty adapter.
func NewAdapter(shape ModelShape, name string, defaultScale float64) (*Adapter, error) {
	ns := shape.native()
	defer capi.DeleteS2ft_model_shape(ns)
	cell := capi.New_adapter_out()
	defer capi.Delete_adapter_out(cell)
	if err := call(func() int { return capi.S2ft_adapter_create(ns, name, defaultScale, cell) }); err != nil {
		return nil, err
	}
	return &Adapter{p: capi.Adapter_out_value(cell)}, nil
}

// LoadAdapter loads an adapter saved by Save.
func LoadAdapter(path string) (*Adapter, error) {
	cell := capi.New_adapter_out()
	defer capi.Delete_adapter_out(cell)
	if err := call(func() int { return capi.S2ft_adapter_load(path, cell) }); err != nil {
		return nil, err
	}
	return &Adapter{p: capi.Adapter_out_value(cell)}, nil
}

func adapterArray(adapters []*Adapter) capi.Struct_SS_s2ft_adapter {
	arr := capi.S2ft_go_adapters_new(int64(len(adapters)))
	for i, a := range adapters {
		capi.S2ft_go_adapters_set(arr, int64(i), a.p)
	}
	return arr
}

// FuseAdapters fuses adapters (weights nil: default scales).
func FuseAdapters(adapters []*Adapter, weights []float64) (*Adapter, error) {
	if len(adapters) == 0 || (weights != nil && len(weights) != len(adapters)) {
		return nil, &Error{Status: ErrInvalidArgument, Message: "FuseAdapters: need one weight per adapter and at least one adapter"}
	}
	arr := adapterArray(adapters)
	defer capi.S2ft_go_free(arr.Swigcptr())
	var w *float64
	if weights != nil {
		w = &weights[0]
	}
	cell := capi.New_adapter_out()
	defer capi.Delete_adapter_out(cell)
	if err := call(func() int { return capi.S2ft_adapter_fuse(arr.Swigcptr(), w, int64(len(adapters)), cell) }); err != nil {
		return nil, err
	}
	return &Adapter{p: capi.Adapter_out_value(cell)}, nil
}

// Close destroys the adapter (idempotent). Not while applied to a Model. An
// adapter a Model loaded from files (Model.Applied) is the model's: Close
// only forgets it.
func (a *Adapter) Close() {
	if a != nil && a.p != nil {
		if !a.borrowed {
			capi.S2ft_adapter_destroy(a.p)
		}
		a.p = nil
	}
}

// Set sets the entry of (layer, target); base (may be nil) fingerprints the lines.
func (a *Adapter) Set(layer, target int, lines []int64, delta, base *Tensor) error {
	var p *int64
	if len(lines) > 0 {
		p = &lines[0]
	}
	return call(func() int {
		return capi.S2ft_adapter_set(a.p, layer, target, p, int64(len(lines)), delta.ptr(), base.ptr())
	})
}

// Name is the adapter's name.
func (a *Adapter) Name() string { return capi.S2ft_adapter_name(a.p) }

// Lines returns the base-order lines of (layer, target).
func (a *Adapter) Lines(layer, target int) ([]int64, error) {
	var n int64
	if err := call(func() int { return capi.S2ft_adapter_lines(a.p, layer, target, nil, nil, 0, &n) }); err != nil {
		return nil, err
	}
	out := make([]int64, n)
	if n == 0 {
		return out, nil
	}
	err := call(func() int { return capi.S2ft_adapter_lines(a.p, layer, target, &out[0], nil, n, &n) })
	return out, err
}

// Delta copies the delta of (layer, target) into out.
func (a *Adapter) Delta(layer, target int, out *Tensor) error {
	return call(func() int { return capi.S2ft_adapter_delta(a.p, layer, target, out.ptr()) })
}

// SparseEntries are the unstructured sparse entries of one (layer, weight)
// of an adapter (Adapter.Sparse).
type SparseEntries struct {
	Indices     []int64   // ascending base-order flat indices r*cols + c
	Deltas      []float32 // the f32 delta of each index
	Fingerprint uint64    // base fingerprint of the whole weight (0: unknown, or no entries)
}

// SetSparse sets the unstructured sparse entries of (layer, weight), weight
// one of the Weight constants: strictly ascending base-order flat indices
// r*cols + c and their delta (len(indices) elements, [count] or [1, count],
// finite; copied to f32). base (may be nil) is the full base weight, for the
// entries' fingerprint. No index may lie on a structured line of the same
// (layer, weight). Empty indices remove the entries. A failed call changes
// nothing.
func (a *Adapter) SetSparse(layer, weight int, indices []int64, delta, base *Tensor) error {
	if len(indices) == 0 {
		return a.ClearSparse(layer, weight)
	}
	return call(func() int {
		return capi.S2ft_adapter_set_sparse(a.p, layer, weight, &indices[0], int64(len(indices)), delta.ptr(), base.ptr())
	})
}

// ClearSparse removes the sparse entries of (layer, weight).
func (a *Adapter) ClearSparse(layer, weight int) error {
	return call(func() int {
		return capi.S2ft_adapter_set_sparse(a.p, layer, weight, nil, 0, capi.SwigcptrS2ft_tensor(0), capi.SwigcptrS2ft_tensor(0))
	})
}

// Sparse returns the sparse entries of (layer, weight) (empty, fingerprint
// 0, when there are none).
func (a *Adapter) Sparse(layer, weight int) (SparseEntries, error) {
	var n int64
	var fp uint64
	if err := call(func() int { return capi.S2ft_adapter_sparse(a.p, layer, weight, nil, nil, 0, &n, &fp) }); err != nil {
		return SparseEntries{}, err
	}
	e := SparseEntries{Indices: make([]int64, n), Deltas: make([]float32, n)}
	if n > 0 {
		if err := call(func() int {
			return capi.S2ft_adapter_sparse(a.p, layer, weight, &e.Indices[0], &e.Deltas[0], n, &n, &fp)
		}); err != nil {
			return SparseEntries{}, err
		}
		e.Indices, e.Deltas = e.Indices[:n], e.Deltas[:n]
	}
	e.Fingerprint = fp
	return e, nil
}

// SparseInfo returns the weights with sparse entries in some layer (a mask
// of WeightBit) and the number of sparse entries in all.
func (a *Adapter) SparseInfo() (weights uint32, entries int64, err error) {
	var mask uint
	err = call(func() int { return capi.S2ft_adapter_sparse_info(a.p, &mask, &entries) })
	return uint32(mask), entries, err
}

// LowRankEntry is the low-rank entry of one (layer, weight) of an adapter
// (Adapter.LowRank): the delta B A of the whole base-order weight as its f32
// factors.
type LowRankEntry struct {
	Rank        int       // k, at least 1
	B           []float32 // b [rows, k], row-major
	A           []float32 // a [k, cols], row-major
	Fingerprint uint64    // base fingerprint of the whole weight (0: unknown)
}

// SetLowRank sets the low-rank entry of (layer, weight), weight one of the
// Weight constants: the delta b a of the whole base-order weight [rows, cols],
// kept as its factors b [rows, k] and a [k, cols] (f32, f16 or bf16 on the
// CPU, any strides; k >= 1, every value finite; copied to f32). A low-rank
// entry changes the whole weight, so the (layer, weight) may hold no
// structured entry and no sparse entries beside it (and Set and SetSparse
// refuse while it is there). base (may be nil) is the full base weight, for
// the entry's fingerprint. b and a both nil remove the entry (ClearLowRank);
// only one of them nil is ErrInvalidArgument. A failed call changes nothing.
func (a *Adapter) SetLowRank(layer, weight int, b, f, base *Tensor) error {
	return call(func() int {
		return capi.S2ft_adapter_set_low_rank(a.p, layer, weight, b.ptr(), f.ptr(), base.ptr())
	})
}

// ClearLowRank removes the low-rank entry of (layer, weight) (none is not an
// error).
func (a *Adapter) ClearLowRank(layer, weight int) error {
	return a.SetLowRank(layer, weight, nil, nil, nil)
}

// SetSorsa sets the low-rank entry of (layer, weight) to what SORSA training
// changed: SorsaInit split the weight into a residual and u0, s0, vt0;
// training made them u, s, vt (all of rank r). The delta
// u diag(s) vt - u0 diag(s0) vt0 is stored as b = [u diag(s) | -u0 diag(s0)]
// ([rows, 2r], each product rounded once to f32) and a = [vt ; vt0]
// ([2r, cols]), so LowRank reads back rank 2r and the entry exports to PEFT
// as LoRA of rank 2r. u, u0 are [rows, r], s, s0 [r] or [1, r], vt, vt0
// [r, cols], all f32 on the CPU (ErrShape for factors of different ranks,
// ErrDtype for factors that are not f32). base (may be nil) is the weight as
// it was before SorsaInit (the base the adapter applies to), for the
// fingerprint. Otherwise as SetLowRank.
func (a *Adapter) SetSorsa(layer, weight int, u0, s0, vt0, u, s, vt, base *Tensor) error {
	return call(func() int {
		return capi.S2ft_adapter_set_sorsa(a.p, layer, weight, u0.ptr(), s0.ptr(), vt0.ptr(), u.ptr(), s.ptr(), vt.ptr(), base.ptr())
	})
}

// LowRankInto returns the rank k of the low-rank entry of (layer, weight)
// (0: none) and its base fingerprint, and copies b into bOut ([rows, k]) and
// a into aOut ([k, cols]) when they are not nil (CPU tensors of any dtype,
// rounded; ErrState when there is no entry to copy).
func (a *Adapter) LowRankInto(layer, weight int, bOut, aOut *Tensor) (rank int64, fingerprint uint64, err error) {
	err = call(func() int {
		return capi.S2ft_adapter_low_rank(a.p, layer, weight, &rank, bOut.ptr(), aOut.ptr(), &fingerprint)
	})
	return rank, fingerprint, err
}

// LowRank returns the low-rank entry of (layer, weight) as f32 factors, or
// nil when there is none.
func (a *Adapter) LowRank(layer, weight int) (*LowRankEntry, error) {
	k, _, err := a.LowRankInto(layer, weight, nil, nil)
	if err != nil || k == 0 {
		return nil, err
	}
	rows, cols, err := a.lowRankDims(weight)
	if err != nil {
		return nil, err
	}
	bt, err := NewTensor(rows, k)
	if err != nil {
		return nil, err
	}
	defer bt.Close()
	at, err := NewTensor(k, cols)
	if err != nil {
		return nil, err
	}
	defer at.Close()
	rank, fp, err := a.LowRankInto(layer, weight, bt, at)
	if err != nil {
		return nil, err
	}
	return &LowRankEntry{Rank: int(rank), B: append([]float32(nil), bt.Data()...), A: append([]float32(nil), at.Data()...), Fingerprint: fp}, nil
}

// lowRankDims is the [rows, cols] of a weight in the adapter's model shape.
func (a *Adapter) lowRankDims(weight int) (int64, int64, error) {
	s, _, _, err := a.Info()
	if err != nil {
		return 0, 0, err
	}
	d, f := int64(s.DModel), int64(s.DFF)
	nq, kv := int64(s.NHeads*s.HeadDim), int64(s.NKVHeads*s.HeadDim)
	switch weight {
	case WeightO:
		return d, nq, nil
	case WeightV, WeightK:
		return kv, d, nil
	case WeightQ:
		return nq, d, nil
	case WeightDown:
		return d, f, nil
	case WeightUp, WeightGate:
		return f, d, nil
	}
	return 0, 0, &Error{Status: ErrInvalidArgument, Message: fmt.Sprintf("weight %d is not one of the Weight constants", weight)}
}

// LowRankInfo returns the weights with a low-rank entry in some layer (a mask
// of WeightBit) and the number of low-rank entries (layer, weight) in all.
func (a *Adapter) LowRankInfo() (weights uint32, entries int64, err error) {
	var mask uint
	err = call(func() int { return capi.S2ft_adapter_low_rank_info(a.p, &mask, &entries) })
	return uint32(mask), entries, err
}

// Save writes the adapter as safetensors.
func (a *Adapter) Save(path string) error {
	return call(func() int { return capi.S2ft_adapter_save(a.p, path) })
}

// Model holds base weights that adapters are applied to: C memory tensors
// (NewModel) or a checkpoint's (NewModelFromCheckpoint).
type Model struct {
	p       capi.Struct_SS_s2ft_model
	layers  []LayerWeights // keeps the tensors reachable
	ctx     *Context       // the context and checkpoint the model keeps
	ckpt    *Checkpoint
	applied *Adapter       // the applied adapter, as the binding knows it
	views   []LayerWeights // Layer's views, owned by the model
}

// selectionPtr is the C handle of sel, or NULL for a nil selection.
func selectionPtr(sel *Selection) capi.Struct_SS_s2ft_selection {
	if sel == nil {
		return capi.SwigcptrStruct_SS_s2ft_selection(0)
	}
	return sel.p
}

// NewModel creates a model over the weights in base order.
func NewModel(ctx *Context, shape ModelShape, layers []LayerWeights) (*Model, error) {
	return NewPermutedModel(ctx, shape, layers, nil)
}

// NewPermutedModel creates a model over weights co-permuted by perm (as after
// Permute forward); a nil perm means base order. Adapters stay in base order.
func NewPermutedModel(ctx *Context, shape ModelShape, layers []LayerWeights, perm *Selection) (*Model, error) {
	ns := shape.native()
	defer capi.DeleteS2ft_model_shape(ns)
	arr := nativeLayers(layers)
	defer capi.S2ft_go_free(arr.Swigcptr())
	cell := capi.New_model_out()
	defer capi.Delete_model_out(cell)
	if err := call(func() int {
		return capi.S2ft_model_create(ctx.p, ns, arr, selectionPtr(perm), cell)
	}); err != nil {
		return nil, err
	}
	return &Model{p: capi.Model_out_value(cell), layers: layers, ctx: ctx}, nil
}

// Close destroys the model (idempotent); an applied adapter stays merged.
// Views from Layer and an adapter from ApplyFiles are invalid afterwards.
func (m *Model) Close() {
	if m != nil && m.p != nil {
		capi.S2ft_model_destroy(m.p)
		m.p = nil
		m.setApplied(nil)
		for _, l := range m.views {
			for _, t := range []*Tensor{l.Q, l.K, l.V, l.O, l.Gate, l.Up, l.Down} {
				if t != nil {
					t.invalidate()
				}
			}
		}
		m.views = nil
		if m.ckpt != nil {
			m.ckpt.models--
			m.ckpt = nil
		}
	}
}

// setApplied records the applied adapter; one the model loaded from files
// is gone when replaced, so its Adapter is forgotten.
func (m *Model) setApplied(a *Adapter) {
	if m.applied != nil && m.applied.borrowed {
		m.applied.p = nil
	}
	m.applied = a
}

func applyFlags(flags []uint32) uint {
	var f uint
	for _, x := range flags {
		f |= uint(x)
	}
	return f
}

// Apply merges an adapter (scale NaN: its default scale). Flags: ApplyForce.
func (m *Model) Apply(a *Adapter, scale float64, flags ...uint32) error {
	if err := call(func() int { return capi.S2ft_adapter_apply(m.p, a.p, scale, applyFlags(flags)) }); err != nil {
		return err
	}
	m.setApplied(a)
	return nil
}

// Switch replaces the applied adapter; bit-identical to Remove then Apply.
// Flags: ApplyForce.
func (m *Model) Switch(a *Adapter, scale float64, flags ...uint32) error {
	if err := call(func() int { return capi.S2ft_adapter_switch(m.p, a.p, scale, applyFlags(flags)) }); err != nil {
		return err
	}
	m.setApplied(a)
	return nil
}

// Remove restores the displaced lines bit-exactly.
func (m *Model) Remove() error {
	if err := call(func() int { return capi.S2ft_adapter_remove(m.p) }); err != nil {
		return err
	}
	m.setApplied(nil)
	return nil
}

// DefaultScale is the NaN scale that selects an adapter's default scale.
var DefaultScale = math.NaN()

// ForwardMixed runs one linear layer for a batch of segments, segment j
// (rows offsets[j]..offsets[j+1]) using adapters[segmentAdapter[j]] or none
// (-1). scales nil: default scales. w is in base order.
func ForwardMixed(ctx *Context, layer, target int, x, w *Tensor, adapters []*Adapter, scales []float64,
	offsets []int64, segmentAdapter []int32, y *Tensor) error {
	return ForwardMixedPermuted(ctx, layer, target, x, w, nil, adapters, scales, offsets, segmentAdapter, y)
}

// ForwardMixedPermuted is ForwardMixed for a base weight w (and inputs)
// co-permuted by perm; a nil perm means base order.
func ForwardMixedPermuted(ctx *Context, layer, target int, x, w *Tensor, perm *Selection, adapters []*Adapter,
	scales []float64, offsets []int64, segmentAdapter []int32, y *Tensor) error {
	if len(offsets) != len(segmentAdapter)+1 || len(segmentAdapter) == 0 {
		return &Error{Status: ErrInvalidArgument, Message: fmt.Sprintf("ForwardMixed: %d offsets for %d segments", len(offsets), len(segmentAdapter))}
	}
	if scales != nil && len(scales) != len(adapters) {
		return &Error{Status: ErrInvalidArgument, Message: "ForwardMixed: need one scale per adapter"}
	}
	arr := adapterArray(adapters)
	defer capi.S2ft_go_free(arr.Swigcptr())
	var sp *float64
	if scales != nil {
		sp = &scales[0]
	}
	// SWIG shows int32_t* as *int; the C side reads int32 values.
	seg := (*int)(unsafe.Pointer(&segmentAdapter[0]))
	return call(func() int {
		return capi.S2ft_adapter_forward_mixed(ctx.p, layer, target, x.ptr(), w.ptr(),
			selectionPtr(perm), arr.Swigcptr(), sp, int64(len(adapters)),
			&offsets[0], seg, int64(len(segmentAdapter)), y.ptr())
	})
}
