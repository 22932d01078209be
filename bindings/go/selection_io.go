package s2ft

import "s2ft.dev/s2ft/internal/capi"

// Permutation kinds for Selection.Permutation (S2FT_PERM_*).
const (
	PermHeads    = 0 // over query heads (NHeads entries)
	PermKVHeads  = 1 // over KV heads (NKVHeads entries)
	PermChannels = 2 // over FFN channels (DFF entries)
)

// LoadSelection loads a selection saved by Selection.Save (the file is
// checked field by field by the library).
func LoadSelection(path string) (*Selection, error) {
	cell := capi.New_selection_out()
	defer capi.Delete_selection_out(cell)
	if err := call(func() int { return capi.S2ft_selection_load(path, cell) }); err != nil {
		return nil, err
	}
	return &Selection{capi.Selection_out_value(cell)}, nil
}

// Save writes the selection (shape, options, indices and permutations) as
// versioned JSON, atomically.
func (s *Selection) Save(path string) error {
	return call(func() int { return capi.S2ft_selection_save(s.p, path) })
}

// Shape is the model shape the selection was made for.
func (s *Selection) Shape() (ModelShape, error) {
	n := capi.NewS2ft_model_shape()
	defer capi.DeleteS2ft_model_shape(n)
	if err := call(func() int { return capi.S2ft_selection_shape(s.p, n) }); err != nil {
		return ModelShape{}, err
	}
	return shapeFrom(n), nil
}

// Targets is the mask (TargetBit values) of the targets the selection trains.
func (s *Selection) Targets() (uint32, error) {
	var mask uint
	err := call(func() int { return capi.S2ft_selection_targets(s.p, &mask) })
	return uint32(mask), err
}

// Range returns the contiguous weight lines [begin, begin+count) that
// (layer, target) trains after Permute (columns for O/DOWN, rows for V/UP).
// It fails with ErrState when the permuted lines are not contiguous (e.g.
// single heads under GQA): use Indices and the index path then.
func (s *Selection) Range(layer, target int) (begin, count int64, err error) {
	err = call(func() int { return capi.S2ft_selection_range(s.p, layer, target, &begin, &count) })
	return begin, count, err
}

// Permutation returns the co-permutation of layer for kind (PermHeads,
// PermKVHeads, PermChannels): entry p is the base index of the unit at
// position p after Permute.
func (s *Selection) Permutation(layer, kind int) ([]int64, error) {
	var n int64
	if err := call(func() int { return capi.S2ft_selection_permutation(s.p, layer, kind, nil, 0, &n) }); err != nil {
		return nil, err
	}
	out := make([]int64, n)
	if n == 0 {
		return out, nil
	}
	err := call(func() int { return capi.S2ft_selection_permutation(s.p, layer, kind, &out[0], n, &n) })
	return out, err
}

func shapeFrom(n capi.S2ft_model_shape) ModelShape {
	return ModelShape{NLayers: n.GetN_layers(), DModel: n.GetD_model(), NHeads: n.GetN_heads(),
		NKVHeads: n.GetN_kv_heads(), HeadDim: n.GetHead_dim(), DFF: n.GetD_ff()}
}
