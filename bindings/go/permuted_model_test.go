package s2ft

import (
	"math"
	"testing"
)

// An adapter applied to a co-permuted model, then permuted back, gives the
// same weights as the adapter applied to the base-order model; the mixed
// forward on permuted weights equals the one in base order; a wrong base is
// refused unless ApplyForce is passed.
func TestPermutedModelAndForce(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	var count [4]int64
	count[TargetDown] = 3
	sel := must(Select(ctx, shape, SelectOptions{Seed: 5, Count: count, Targets: 1 << TargetDown}))
	defer sel.Close()
	out, in := shape.DModel, shape.DFF
	base := make([]LayerWeights, shape.NLayers)
	perm := make([]LayerWeights, shape.NLayers)
	for l := range base {
		base[l].Down = must(FromSlice(randoms(40+int64(l), out*in), int64(out), int64(in)))
		defer base[l].Down.Close()
		perm[l].Down = clone(t, base[l].Down)
		defer perm[l].Down.Close()
		ok(t, Permute(ctx, sel, l, perm[l], PermuteForward))
	}
	a := makeAdapter(t, "A", 3, must(sel.Indices(0, TargetDown, IndexLines)), base)
	defer a.Close()

	mb := must(NewModel(ctx, shape, base))
	defer mb.Close()
	mp := must(NewPermutedModel(ctx, shape, perm, sel))
	defer mp.Close()
	ok(t, mb.Apply(a, 0.5))
	ok(t, mp.Apply(a, 0.5))
	for l := range perm {
		ok(t, Permute(ctx, sel, l, perm[l], PermuteInverse))
		sameBits(t, "permuted model after apply", base[l].Down.Data(), perm[l].Down.Data())
		ok(t, Permute(ctx, sel, l, perm[l], PermuteForward))
	}
	ok(t, mb.Remove())
	ok(t, mp.Remove())

	// Mixed forward: base order vs permuted weights and inputs.
	const T = 4
	x := must(FromSlice(randoms(91, T*in), T, int64(in)))
	defer x.Close()
	xp := clone(t, x) // x's columns in the permuted channel order
	defer xp.Close()
	order := must(sel.Permutation(0, PermChannels))
	for r := 0; r < T; r++ {
		for p, c := range order {
			xp.Data()[r*in+p] = x.Data()[r*in+int(c)]
		}
	}
	y, yp := must(NewTensor(T, int64(out))), must(NewTensor(T, int64(out)))
	defer y.Close()
	defer yp.Close()
	offsets, seg := []int64{0, 2, T}, []int32{0, -1}
	ok(t, ForwardMixed(ctx, 0, TargetDown, x, base[0].Down, []*Adapter{a}, nil, offsets, seg, y))
	ok(t, ForwardMixedPermuted(ctx, 0, TargetDown, xp, perm[0].Down, sel, []*Adapter{a}, nil, offsets, seg, yp))
	for i := range y.Data() {
		if math.Abs(float64(y.Data()[i]-yp.Data()[i])) > 1e-4*(1+math.Abs(float64(y.Data()[i]))) {
			t.Fatalf("permuted mixed forward differs at %d: %g vs %g", i, y.Data()[i], yp.Data()[i])
		}
	}

	// A base line changed since the adapter was made: refused, then forced.
	base[0].Down.Data()[0*in+int(must(sel.Indices(0, TargetDown, IndexLines))[0])] += 1
	wantStatus(t, mb.Apply(a, 1), ErrFormat, "fingerprint")
	ok(t, mb.Apply(a, 1, ApplyForce))
	ok(t, mb.Remove())
}

func TestContextOptions(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContextOn(DeviceCPU, 0, 1))
	ctx.Close()
	_, err := NewContextOn(DeviceCPU, 3, 0)
	wantStatus(t, err, ErrInvalidArgument, "device_id")
	_, err = NewContextOn(42, 0, 0)
	wantStatus(t, err, ErrInvalidArgument, "device_type")
}
