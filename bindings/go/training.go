package s2ft

import (
	"fmt"

	"s2ft.dev/s2ft/internal/capi"
)

// AdapterFromTraining builds an adapter from a training run: for every
// (layer, target) that sel trains, delta = trained slice - base slice. base
// and trained hold one LayerWeights per layer; only O, V, Down and Up are
// read (those of trained targets must be set). With permuted true both are
// in the selection's permuted order (as after Permute forward) and the
// lines are mapped back to base order.
func AdapterFromTraining(ctx *Context, sel *Selection, base, trained []LayerWeights, permuted bool, name string) (*Adapter, error) {
	if len(base) != len(trained) || len(base) == 0 {
		return nil, &Error{Status: ErrInvalidArgument,
			Message: fmt.Sprintf("AdapterFromTraining: base has %d layers, trained %d (need the same, at least 1)", len(base), len(trained))}
	}
	if shape, err := sel.Shape(); err != nil {
		return nil, err
	} else if shape.NLayers != len(base) {
		return nil, &Error{Status: ErrInvalidArgument,
			Message: fmt.Sprintf("AdapterFromTraining: base has %d layers, the selection's model has %d", len(base), shape.NLayers)}
	}
	nb := nativeLayers(base)
	defer capi.S2ft_go_free(nb.Swigcptr())
	nt := nativeLayers(trained)
	defer capi.S2ft_go_free(nt.Swigcptr())
	perm := 0
	if permuted {
		perm = 1
	}
	cell := capi.New_adapter_out()
	defer capi.Delete_adapter_out(cell)
	if err := call(func() int { return capi.S2ft_adapter_from_training(ctx.p, sel.p, nb, nt, perm, name, cell) }); err != nil {
		return nil, err
	}
	return &Adapter{p: capi.Adapter_out_value(cell)}, nil
}

// SetInfo renames the adapter and sets its default scale.
func (a *Adapter) SetInfo(name string, defaultScale float64) error {
	return call(func() int { return capi.S2ft_adapter_set_info(a.p, name, defaultScale) })
}

// Info returns the adapter's model shape, default scale and target mask
// (TargetBit of the targets with an entry in some layer).
func (a *Adapter) Info() (shape ModelShape, defaultScale float64, targets uint32, err error) {
	n := capi.NewS2ft_model_shape()
	defer capi.DeleteS2ft_model_shape(n)
	var mask uint
	if err = call(func() int { return capi.S2ft_adapter_info(a.p, n, &defaultScale, &mask) }); err != nil {
		return ModelShape{}, 0, 0, err
	}
	shape = shapeFrom(n)
	return shape, defaultScale, uint32(mask), nil
}
