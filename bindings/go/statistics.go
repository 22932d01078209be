package s2ft

import "s2ft.dev/s2ft/internal/capi"

// Selection strategies (S2FT_STRATEGY_*), the paper's S2FT-R/W/A/S/G and
// LIFT's principal weights.
const (
	StrategyRandom     = 0 // uniform random from the seed
	StrategyWeight     = 1 // norm of the unit's trained weight
	StrategyActivation = 2 // norm of the unit's input activation
	StrategyWeightAct  = 3 // weight norm x activation norm
	StrategyGradient   = 4 // norm of the unit's weight gradient
	StrategyPrincipal  = 5 // norm of the unit's lines in the rank-r SVD approximation (AddPrincipal)
)

// Selection order, budget allocation and head granularity (SelectOptions).
const (
	OrderLargest     = 0 // pick the highest scores
	OrderSmallest    = 1 // pick the lowest scores
	AllocatePerLayer = 0 // every layer gets the same budget
	AllocateGlobal   = 1 // one budget ranked across all layers
	HeadsByGroup     = 0 // whole KV groups: contiguous after Permute
	HeadsSingle      = 1 // single query heads: index path under GQA
)

// Statistic kinds for Statistics.Get (S2FT_STAT_*).
const (
	StatWeight     = 0
	StatActivation = 1
	StatGradient   = 2
	StatPrincipal  = 3 // Statistics.AddPrincipal
)

// Statistics are per-unit sums of squares (weight, activation and gradient
// norms) that score units for SelectWithStatistics. A unit is a query head
// for O, a KV head for V, an FFN channel for DOWN and UP.
type Statistics struct {
	p capi.Struct_SS_s2ft_statistics
}

// NewStatistics creates empty statistics for a model shape.
func NewStatistics(ctx *Context, shape ModelShape) (*Statistics, error) {
	ns := shape.native()
	defer capi.DeleteS2ft_model_shape(ns)
	cell := capi.New_statistics_out()
	defer capi.Delete_statistics_out(cell)
	if err := call(func() int { return capi.S2ft_statistics_create(ctx.p, ns, cell) }); err != nil {
		return nil, err
	}
	return &Statistics{capi.Statistics_out_value(cell)}, nil
}

// Close destroys the statistics (idempotent).
func (s *Statistics) Close() {
	if s != nil && s.p != nil {
		capi.S2ft_statistics_destroy(s.p)
		s.p = nil
	}
}

// AddWeight records the base-order weight of target in layer (o_proj for
// TargetO, v_proj for TargetV, down_proj for TargetDown, up_proj for
// TargetUp), replacing an earlier record for the same (layer, target).
func (s *Statistics) AddWeight(layer, target int, weight *Tensor) error {
	return call(func() int { return capi.S2ft_statistics_add_weight(s.p, layer, target, weight.ptr()) })
}

// AddActivation accumulates the input activation x [T, in] of o_proj
// (TargetO) or down_proj (TargetDown): each input column c gains
// sum_t x[t, c]^2. V and UP use their coupled O/DOWN inputs.
func (s *Statistics) AddActivation(layer, target int, x *Tensor) error {
	return call(func() int { return capi.S2ft_statistics_add_activation(s.p, layer, target, x.ptr()) })
}

// AddGradient accumulates each unit's squared weight-gradient norm for one
// calibration batch, from the layer's input x [T, in] and output gradient
// dy [T, out] (dW = dy^T x).
func (s *Statistics) AddGradient(layer, target int, x, dy *Tensor) error {
	return call(func() int { return capi.S2ft_statistics_add_gradient(s.p, layer, target, x.ptr(), dy.ptr()) })
}

// AddPrincipal records LIFT's principal-weight score of target in layer for
// StrategyPrincipal: each unit's sum of squares of its lines in the rank-rank
// truncated SVD of the base-order weight (computed in double on the host;
// rank in [1, min(rows, cols)]). It replaces an earlier principal record of
// (layer, target). ErrUnsupported without LAPACK; on CUDA statistics the SVD
// runs on the device (synchronises).
func (s *Statistics) AddPrincipal(layer, target int, weight *Tensor, rank int) error {
	return call(func() int { return capi.S2ft_statistics_add_principal(s.p, layer, target, weight.ptr(), rank) })
}

// Get returns the per-unit sums of squares of one statistic (StatWeight,
// StatActivation, StatGradient) for (layer, target).
func (s *Statistics) Get(layer, target, kind int) ([]float64, error) {
	var n int64
	if err := call(func() int { return capi.S2ft_statistics_get(s.p, layer, target, kind, nil, 0, &n) }); err != nil {
		return nil, err
	}
	out := make([]float64, n)
	if n == 0 {
		return out, nil
	}
	err := call(func() int { return capi.S2ft_statistics_get(s.p, layer, target, kind, &out[0], n, &n) })
	return out, err
}

// SelectWithStatistics chooses units to train, scoring them by stats for
// the weight, activation, weight*activation and gradient strategies (stats
// may be nil for StrategyRandom).
func SelectWithStatistics(ctx *Context, shape ModelShape, opts SelectOptions, stats *Statistics) (*Selection, error) {
	p := capi.Struct_SS_s2ft_statistics(capi.SwigcptrStruct_SS_s2ft_statistics(0))
	if stats != nil && stats.p != nil {
		p = stats.p
	}
	return selectUnits(ctx, shape, opts, p)
}
