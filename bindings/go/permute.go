package s2ft

import "s2ft.dev/s2ft/internal/capi"

// Permutation directions for Permute (S2FT_PERMUTE_*).
const (
	PermuteForward = 0 // base order -> selected units first
	PermuteInverse = 1 // permuted order -> base order
)

// Permute co-permutes one layer's weights in place so that the selected
// units come first (PermuteForward), or undoes it (PermuteInverse). Nil
// weights are left alone. The block computes the same function when all
// coupled weights move together (Q, K, V, O for heads; Gate, Up, Down for
// channels); data is moved, never recomputed, so Inverse after Forward
// restores the weights bit-exactly.
func Permute(ctx *Context, sel *Selection, layer int, weights LayerWeights, direction int) error {
	arr := nativeLayers([]LayerWeights{weights})
	defer capi.S2ft_go_free(arr.Swigcptr())
	return call(func() int { return capi.S2ft_permute(ctx.p, sel.p, layer, arr, direction) })
}
