package s2ft

import (
	"math"
	"testing"
)

func TestSparseSetBackwardOptimizerAndLift(t *testing.T) {
	ctx := must(NewContext())
	defer ctx.Close()

	// A set: round trip and a refused index list.
	set := must(NewSparseSet(ctx, 5, 7, []int64{0, 6, 12, 20, 34}))
	defer set.Close()
	if n := must(set.Count()); n != 5 {
		t.Fatalf("Count = %d", n)
	}
	if rows, cols, err := set.Shape(); err != nil || rows != 5 || cols != 7 {
		t.Fatalf("Shape = %d, %d, %v", rows, cols, err)
	}
	idx := must(set.Indices())
	if len(idx) != 5 || idx[4] != 34 {
		t.Fatalf("Indices = %v", idx)
	}
	if _, err := NewSparseSet(ctx, 5, 7, []int64{6, 0}); err == nil {
		t.Fatal("unsorted indices were accepted")
	}

	// The gradient at the entries against a float64 reference.
	const T, out, in = 9, 5, 7
	x, dy := matrix(t, 41, T, in), matrix(t, 42, T, out)
	grad := must(NewTensor(5))
	defer grad.Close()
	if err := set.Backward(ctx, x, dy, nil, nil, grad, 0); err != nil {
		t.Fatal(err)
	}
	xd, dyd, g := x.Data(), dy.Data(), grad.Data()
	for n, flat := range idx {
		r, c := int(flat)/in, int(flat)%in
		ref := 0.0
		for i := 0; i < T; i++ {
			ref += float64(dyd[i*out+r]) * float64(xd[i*in+c])
		}
		if math.Abs(float64(g[n])-ref) > 1e-5*(1+math.Abs(ref)) {
			t.Fatalf("grad[%d] = %g, want %g", n, g[n], ref)
		}
	}

	// SM3 on two entries of a weight: the first step moves each by lr * sign(g).
	w := must(FromSlice([]float32{1, 1, 1, 1, 1, 1}, 2, 3))
	defer w.Close()
	few := must(NewSparseSet(ctx, 2, 3, []int64{1, 5}))
	defer few.Close()
	opts := DefaultOptimizerOptions()
	opts.Kind = OptimizerSM3
	opt := must(NewOptimizer(ctx, opts))
	defer opt.Close()
	if _, err := opt.AddSparse(w, few); err != nil {
		t.Fatal(err)
	}
	gw := must(FromSlice([]float32{2, -1}, 2))
	defer gw.Close()
	if _, err := opt.Step(0.5, []*Tensor{gw}); err != nil {
		t.Fatal(err)
	}
	if d := w.Data(); math.Abs(float64(d[1])-0.5) > 1e-6 || math.Abs(float64(d[5])-1.5) > 1e-6 {
		t.Fatalf("weights after one SM3 step: %v", d)
	}
	if err := opt.SparseReindex(0, set); err == nil {
		t.Fatal("a set of another shape was accepted")
	}

	// LIFT on a rank-1 weight without ties.
	lw := must(FromSlice([]float32{6, 2, -10, 3, 1, -5}, 2, 3))
	defer lw.Close()
	got, err := LiftSelect(ctx, lw, DefaultLiftOptions(1, 2))
	if err != nil {
		if e, ok := err.(*Error); ok && e.Status == ErrUnsupported {
			t.Skip("no LAPACK in this libs2ft")
		}
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != 0 || got[1] != 2 {
		t.Fatalf("LiftSelect = %v, want [0 2]", got)
	}
	if LiftCountForLoraRank(4096, 11008, 16) != 241664 {
		t.Fatal("LiftCountForLoraRank")
	}
}
