package s2ft

import (
	"fmt"

	"s2ft.dev/s2ft/internal/capi"
)

// Optimizer kinds (S2FT_OPTIMIZER_*).
const (
	OptimizerAdamW = 0 // Adam with decoupled weight decay
	OptimizerSGD   = 1 // SGD with optional (Nesterov) momentum
	OptimizerSM3   = 2 // SM3-II: one accumulator per row and per column
)

// OptimizerOptions configures NewOptimizer. Start from
// DefaultOptimizerOptions: the zero value is not the library's default.
type OptimizerOptions struct {
	Kind        int     // OptimizerAdamW, OptimizerSGD or OptimizerSM3
	Beta1       float64 // AdamW
	Beta2       float64 // AdamW
	Eps         float64 // AdamW, SM3
	WeightDecay float64 // all; decoupled for AdamW and SM3
	Momentum    float64 // SGD (0 is plain SGD); SM3's average of updates (0: none)
	Nesterov    bool    // SGD
	MaxGradNorm float64 // clip by the global norm over all slices; 0 is off
	// AgeBiasCorrection: AdamW on sparse parameters, bias correction by each
	// entry's own age (steps since it joined) instead of the step count.
	AgeBiasCorrection bool
}

// DefaultOptimizerOptions returns the library's defaults (AdamW, betas 0.9
// and 0.999, eps 1e-8, no weight decay, no clipping).
func DefaultOptimizerOptions() OptimizerOptions {
	n := capi.NewS2ft_optimizer_options()
	defer capi.DeleteS2ft_optimizer_options(n)
	if err := call(func() int { return capi.S2ft_optimizer_options_init(n, uint(capi.S2FT_OPTIMIZER_OPTIONS_VERSION)) }); err != nil {
		panic(err) // the binding and the library disagree on the options version
	}
	return OptimizerOptions{Kind: n.GetKind(), Beta1: n.GetBeta1(), Beta2: n.GetBeta2(), Eps: n.GetEps(),
		WeightDecay: n.GetWeight_decay(), Momentum: n.GetMomentum(), Nesterov: n.GetNesterov() != 0,
		MaxGradNorm: n.GetMax_grad_norm(), AgeBiasCorrection: n.GetAge_bias_correction() != 0}
}

// Optimizer updates only the trained slices of weights (AdamW or SGD),
// keeping state for the slices alone.
type Optimizer struct {
	p         capi.Struct_SS_s2ft_optimizer
	params    []*Tensor // the weights it keeps pointers to, kept reachable
	schedules int       // open SpIEL schedules that keep it
}

// NewOptimizer creates an optimizer with no parameters.
func NewOptimizer(ctx *Context, opts OptimizerOptions) (*Optimizer, error) {
	n := capi.NewS2ft_optimizer_options()
	defer capi.DeleteS2ft_optimizer_options(n)
	if err := call(func() int { return capi.S2ft_optimizer_options_init(n, uint(capi.S2FT_OPTIMIZER_OPTIONS_VERSION)) }); err != nil {
		return nil, err
	}
	n.SetKind(opts.Kind)
	n.SetBeta1(opts.Beta1)
	n.SetBeta2(opts.Beta2)
	n.SetEps(opts.Eps)
	n.SetWeight_decay(opts.WeightDecay)
	n.SetMomentum(opts.Momentum)
	nesterov := 0
	if opts.Nesterov {
		nesterov = 1
	}
	n.SetNesterov(nesterov)
	n.SetMax_grad_norm(opts.MaxGradNorm)
	age := 0
	if opts.AgeBiasCorrection {
		age = 1
	}
	n.SetAge_bias_correction(age)
	cell := capi.New_optimizer_out()
	defer capi.Delete_optimizer_out(cell)
	if err := call(func() int { return capi.S2ft_optimizer_create(ctx.p, n, cell) }); err != nil {
		return nil, err
	}
	return &Optimizer{p: capi.Optimizer_out_value(cell)}, nil
}

// Close destroys the optimizer (idempotent); its weights stay as they are.
// It returns an ErrState error, and closes nothing, while a SpIEL schedule
// made for it (NewSpiel) is open.
func (o *Optimizer) Close() error {
	if o == nil || o.p == nil {
		return nil
	}
	if o.schedules > 0 {
		return &Error{Status: ErrState, Message: fmt.Sprintf("close the %d SpIEL schedule(s) of this optimizer first", o.schedules)}
	}
	capi.S2ft_optimizer_destroy(o.p)
	o.p = nil
	o.params = nil
	return nil
}

// param is the weight registered as parameter index.
func (o *Optimizer) param(index int64) (*Tensor, error) {
	if o == nil || o.p == nil {
		return nil, &Error{Status: ErrState, Message: "the optimizer is closed"}
	}
	if index < 0 || index >= int64(len(o.params)) {
		return nil, &Error{Status: ErrInvalidArgument, Message: fmt.Sprintf("param_index %d is out of range [0, %d)", index, len(o.params))}
	}
	return o.params[index], nil
}

// AddParam registers the trained slice of weight and returns its parameter
// index (0, 1, ... in call order). The optimizer keeps the weight's data
// pointer, so weight must be a C-memory tensor (NewTensor, FromSlice or
// FromPointer) that stays open until the optimizer is closed. Only before
// the first Step.
func (o *Optimizer) AddParam(weight *Tensor, slice Slice) (int64, error) {
	sl := slice.native()
	defer capi.S2ft_go_free(sl.Swigcptr())
	var index int64
	if err := call(func() int { return capi.S2ft_optimizer_add_param(o.p, weight.ptr(), sl, &index) }); err != nil {
		return 0, err
	}
	o.params = append(o.params, weight)
	return index, nil
}

// AddSparse registers weight's entries at set's flat indices (a set made for
// the weight's shape) and returns the parameter index; its gradient is
// [count] (what SparseSet.Backward writes). weight must be a C-memory
// tensor that stays open until the optimizer is closed, as for AddParam.
func (o *Optimizer) AddSparse(weight *Tensor, set *SparseSet) (int64, error) {
	var index int64
	if err := call(func() int { return capi.S2ft_optimizer_add_sparse(o.p, weight.ptr(), set.p, &index) }); err != nil {
		return 0, err
	}
	o.params = append(o.params, weight)
	return index, nil
}

// SparseReindex moves sparse parameter index to set's entries: entries in
// both keep their state, new ones start at zero.
func (o *Optimizer) SparseReindex(index int64, set *SparseSet) error {
	return call(func() int { return capi.S2ft_optimizer_sparse_reindex(o.p, index, set.p) })
}

// Step takes one optimizer step with learning rate lr; grads[i] is
// parameter i's gradient slice ([out, k] for columns, [k, in] for rows).
// It returns the global gradient norm before clipping. The gradients are
// not modified.
func (o *Optimizer) Step(lr float64, grads []*Tensor) (gradNorm float64, err error) {
	if len(grads) == 0 {
		return 0, &Error{Status: ErrInvalidArgument, Message: "Optimizer.Step: grads is empty"}
	}
	arr := capi.S2ft_go_tensors_new(int64(len(grads)))
	defer capi.S2ft_go_free(arr.Swigcptr())
	for i, g := range grads {
		if g == nil || g.desc == nil {
			return 0, &Error{Status: ErrInvalidArgument, Message: fmt.Sprintf("Optimizer.Step: grads[%d] is nil or closed", i)}
		}
		capi.S2ft_go_tensor_copy(arr, int64(i), g.desc)
	}
	err = call(func() int { return capi.S2ft_optimizer_step(o.p, lr, arr, int64(len(grads)), &gradNorm) })
	return gradNorm, err
}

// StepCount is the number of steps taken (restored by Load).
func (o *Optimizer) StepCount() (int64, error) {
	var n int64
	err := call(func() int { return capi.S2ft_optimizer_step_count(o.p, &n) })
	return n, err
}

// Save writes the optimizer state (options, step count, moments and f32
// master slices) as safetensors, atomically.
func (o *Optimizer) Save(path string) error {
	return call(func() int { return capi.S2ft_optimizer_save(o.p, path) })
}

// Load restores state saved by Save into an optimizer of the same kind with
// the same parameters registered, so that training resumes exactly; master
// copies are written back to the weights.
func (o *Optimizer) Load(path string) error {
	return call(func() int { return capi.S2ft_optimizer_load(o.p, path) })
}
