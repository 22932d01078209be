package s2ft

import (
	"s2ft.dev/s2ft/internal/capi"
)

// SpIEL regrowth, decay and MA score sources (S2FT_SPIEL_*).
const (
	SpielAG = 0 // regrow by the gradient accumulated over candidates ("rigl")
	SpielMA = 1 // regrow by the SM3-style row x column score

	SpielDecayLinear = 0 // p0 * (1 - t/T)
	SpielDecayCosine = 1 // p0 * (1 + cos(pi t/T)) / 2

	SpielMAOptimizer   = 0 // the SM3 optimizer's row and column accumulators
	SpielMAActivations = 1 // sums of dy^2 per row and x^2 per column
)

// SpielOptions configures a SpIEL schedule (NewSpiel, SpielRate). Start
// from DefaultSpielOptions: the zero value is not the library's default.
type SpielOptions struct {
	Regrow              int32   // SpielAG or SpielMA
	ReselectInterval    int64   // N: reselect after steps M, M+N, M+2N, ...
	AccumulationSteps   int64   // M in [1, N]: the steps observed before a reselection
	TotalSteps          int64   // T: the run's optimizer steps (the decay needs them)
	InitialRate         float64 // p0 in [0, 1]
	Decay               int32   // SpielDecayLinear or SpielDecayCosine
	FirstFull           bool    // p = 1 at the first reselection (t = M)
	Candidates          int64   // AG: candidates per window; 0 is the entry count
	SeedMoments         bool    // AG with AdamW: seed regrown moments from the window
	MASource            int32   // SpielMAOptimizer (needs an SM3 optimizer) or SpielMAActivations
	ObservationsPerStep int64   // Observe calls per optimizer step (gradient accumulation)
}

// DefaultSpielOptions returns the library's defaults (AG, N 20, M 5, p0
// 0.2, linear decay, first reselection full, seeded moments) for a run of
// totalSteps optimizer steps.
func DefaultSpielOptions(totalSteps int64) SpielOptions {
	n := capi.NewS2ft_spiel_options()
	defer capi.DeleteS2ft_spiel_options(n)
	if err := call(func() int { return capi.S2ft_spiel_options_init(n, uint(capi.S2FT_SPIEL_OPTIONS_VERSION)) }); err != nil {
		panic(err) // the binding and the library disagree on the options version
	}
	return SpielOptions{Regrow: int32(n.GetRegrow()), ReselectInterval: n.GetReselect_interval(),
		AccumulationSteps: n.GetAccumulation_steps(), TotalSteps: totalSteps, InitialRate: n.GetInitial_rate(),
		Decay: int32(n.GetDecay()), FirstFull: n.GetFirst_full() != 0, Candidates: n.GetCandidates(),
		SeedMoments: n.GetSeed_moments() != 0, MASource: int32(n.GetMa_source()),
		ObservationsPerStep: n.GetObservations_per_step()}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// native is the C struct of o (the caller deletes it).
func (o SpielOptions) native() (capi.S2ft_spiel_options, error) {
	n := capi.NewS2ft_spiel_options()
	if err := call(func() int { return capi.S2ft_spiel_options_init(n, uint(capi.S2FT_SPIEL_OPTIONS_VERSION)) }); err != nil {
		capi.DeleteS2ft_spiel_options(n)
		return nil, err
	}
	n.SetRegrow(int(o.Regrow))
	n.SetReselect_interval(o.ReselectInterval)
	n.SetAccumulation_steps(o.AccumulationSteps)
	n.SetTotal_steps(o.TotalSteps)
	n.SetInitial_rate(o.InitialRate)
	n.SetDecay(int(o.Decay))
	n.SetFirst_full(boolInt(o.FirstFull))
	n.SetCandidates(o.Candidates)
	n.SetSeed_moments(boolInt(o.SeedMoments))
	n.SetMa_source(int(o.MASource))
	n.SetObservations_per_step(o.ObservationsPerStep)
	return n, nil
}

// SpielRate is the replacement rate p(step) of opts (whether or not step
// is a reselection step): p0 (1 - step/T) or p0 (1 + cos(pi step/T)) / 2,
// 1 at step M with FirstFull, 0 after T. Errors: bad options, step < 1.
func SpielRate(opts SpielOptions, step int64) (float64, error) {
	n, err := opts.native()
	if err != nil {
		return 0, err
	}
	defer capi.DeleteS2ft_spiel_options(n)
	var p float64
	err = call(func() int { return capi.S2ft_spiel_rate(n, step, &p) })
	return p, err
}

// SpielStats is what a schedule has done (Spiel.Stats).
type SpielStats struct {
	Steps           int64   // steps counted by Spiel.Step
	Count           int64   // the trained entries k (constant)
	Reselections    int64   // reselection steps run
	Observations    int64   // Observe calls used (inside accumulation windows)
	DenseGradients  int64   // dense [out, in] gradients formed (AG: one per window)
	NextReselection int64   // the next reselection step, 0 when none is left
	LastStep        int64   // the last reselection's step (0: none yet)
	LastRate        float64 // its rate p
	LastTarget      int64   // its n = floor(p k)
	LastDropped     int64   // entries it dropped (their base values written back)
	LastRegrown     int64   // entries it regrew (as many as it dropped)
}

// Spiel is a SpIEL schedule (Ansell et al., 2024): it moves the trained
// entries of one sparse parameter of an Optimizer during training. Make it
// for a parameter registered with Optimizer.AddSparse (normally from random
// entries) before the first training step: the weight's current values at
// the entries become their base values. Each step: SparseSet.Backward with
// the current set, Observe for every micro-batch, the optimizer's Step,
// then Spiel.Step; when that reports a change, take CurrentSet.
//
// At a reselection (after steps M, M+N, M+2N, ...) the floor(p(t) k)
// entries of smallest |W - W_base| are dropped (their base values are
// written back into the weight) and as many regrow, by accumulated
// gradient (SpielAG) or by a row x column score (SpielMA); the parameter
// is reindexed (surviving entries keep their optimizer state exactly).
//
// The schedule keeps its optimizer: close the schedule first
// (Optimizer.Close refuses while one is open).
type Spiel struct {
	p      capi.Struct_SS_s2ft_spiel
	opt    *Optimizer // kept: the library's schedule uses it
	index  int64
	weight *Tensor
	opts   SpielOptions
}

// NewSpiel makes a schedule for sparse parameter paramIndex of opt (its
// weight as registered). A bad option is an ErrInvalidArgument error whose
// message names it.
func NewSpiel(ctx *Context, opt *Optimizer, paramIndex int64, opts SpielOptions) (*Spiel, error) {
	weight, err := opt.param(paramIndex)
	if err != nil {
		return nil, err
	}
	n, err := opts.native()
	if err != nil {
		return nil, err
	}
	defer capi.DeleteS2ft_spiel_options(n)
	cell := capi.New_spiel_out()
	defer capi.Delete_spiel_out(cell)
	if err := call(func() int {
		return capi.S2ft_spiel_create(ctx.p, opt.p, paramIndex, weight.ptr(), n, cell)
	}); err != nil {
		return nil, err
	}
	opt.schedules++
	return &Spiel{p: capi.Spiel_out_value(cell), opt: opt, index: paramIndex, weight: weight, opts: opts}, nil
}

// Close destroys the schedule (idempotent); the weight and the optimizer
// stay as they are.
func (s *Spiel) Close() {
	if s != nil && s.p != nil {
		capi.S2ft_spiel_destroy(s.p)
		s.p = nil
		s.opt.schedules--
	}
}

// ParamIndex is the optimizer parameter the schedule moves.
func (s *Spiel) ParamIndex() int64 { return s.index }

// Optimizer is the optimizer the schedule keeps.
func (s *Spiel) Optimizer() *Optimizer { return s.opt }

// Rate is the replacement rate p(step) of the schedule's options.
func (s *Spiel) Rate(step int64) (float64, error) { return SpielRate(s.opts, step) }

// Observe shows the schedule one micro-batch of the coming step: x [T, in]
// and dy [T, out] as given to SparseSet.Backward. Call it for every
// backward of the weight, before Step; it does nothing outside
// accumulation windows.
func (s *Spiel) Observe(ctx *Context, x, dy *Tensor) error {
	return call(func() int { return capi.S2ft_spiel_observe(s.p, ctx.p, x.ptr(), dy.ptr()) })
}

// Step counts one step (call it after the optimizer's Step); at a
// reselection step it drops and regrows entries, writing the dropped
// entries' base values into the weight. It reports whether the set
// changed. On failure nothing changes.
func (s *Spiel) Step(ctx *Context) (bool, error) {
	var moved int64
	err := call(func() int { return capi.S2ft_go_spiel_step(s.p, ctx.p, s.weight.ptr(), &moved) })
	return moved != 0, err
}

// CurrentSet is a new set of the schedule's current entries on ctx's device
// (the caller closes it).
func (s *Spiel) CurrentSet(ctx *Context) (*SparseSet, error) {
	cell := capi.New_sparse_set_out()
	defer capi.Delete_sparse_set_out(cell)
	if err := call(func() int { return capi.S2ft_spiel_current_set(s.p, ctx.p, cell) }); err != nil {
		return nil, err
	}
	return &SparseSet{capi.Sparse_set_out_value(cell)}, nil
}

// Stats is what the schedule has done so far.
func (s *Spiel) Stats() (SpielStats, error) {
	n := capi.NewS2ft_spiel_stats()
	defer capi.DeleteS2ft_spiel_stats(n)
	n.SetVersion(uint(capi.S2FT_SPIEL_STATS_VERSION))
	if err := call(func() int { return capi.S2ft_spiel_stats_get(s.p, n) }); err != nil {
		return SpielStats{}, err
	}
	return SpielStats{Steps: n.GetSteps(), Count: n.GetCount(), Reselections: n.GetReselections(),
		Observations: n.GetObservations(), DenseGradients: n.GetDense_gradients(),
		NextReselection: n.GetNext_reselection(), LastStep: n.GetLast_step(), LastRate: n.GetLast_rate(),
		LastTarget: n.GetLast_target(), LastDropped: n.GetLast_dropped(), LastRegrown: n.GetLast_regrown()}, nil
}
