package s2ft

import (
	"errors"
	"math"
	"math/rand"
	"sort"
	"strings"
	"testing"
)

const spielRows, spielCols, spielK = 12, 10, 20

// randomEntries is spielK distinct random flat indices, ascending.
func randomEntries(seed int64) []int64 {
	perm := rand.New(rand.NewSource(seed)).Perm(spielRows * spielCols)[:spielK]
	out := make([]int64, spielK)
	for i, p := range perm {
		out[i] = int64(p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// changedOnlyAt reports whether w equals w0 bit for bit outside indices.
func changedOnlyAt(w, w0 []float32, indices []int64) bool {
	in := map[int64]bool{}
	for _, i := range indices {
		in[i] = true
	}
	for i := range w {
		if !in[int64(i)] && math.Float32bits(w[i]) != math.Float32bits(w0[i]) {
			return false
		}
	}
	return true
}

// sparseParam is a random 12 x 10 weight (and a copy of its values), a set
// of 20 random entries and an AdamW optimizer over them.
func sparseParam(t *testing.T, ctx *Context, seed int64) (*Tensor, []float32, *SparseSet, *Optimizer) {
	t.Helper()
	w := matrix(t, seed, spielRows, spielCols)
	w0 := append([]float32(nil), w.Data()...)
	set := must(NewSparseSet(ctx, spielRows, spielCols, randomEntries(seed+1)))
	opt := must(NewOptimizer(ctx, DefaultOptimizerOptions()))
	if i := must(opt.AddSparse(w, set)); i != 0 {
		t.Fatalf("AddSparse = %d", i)
	}
	return w, w0, set, opt
}

// trainSpiel runs steps training steps on random x, dy; it returns the
// current set (the one given is closed when replaced) and the steps after
// which the set moved.
func trainSpiel(t *testing.T, ctx *Context, sp *Spiel, opt *Optimizer, set *SparseSet, steps int, seed int64) (*SparseSet, []int) {
	t.Helper()
	var movedAt []int
	for step := 1; step <= steps; step++ {
		x := matrix(t, seed+int64(2*step), 8, spielCols)
		dy := matrix(t, seed+int64(2*step+1), 8, spielRows)
		g := must(NewTensor(must(set.Count())))
		ok(t, set.Backward(ctx, x, dy, nil, nil, g, 0))
		ok(t, sp.Observe(ctx, x, dy))
		must(opt.Step(0.05, []*Tensor{g}))
		g.Close()
		if must(sp.Step(ctx)) {
			movedAt = append(movedAt, step)
			set.Close()
			set = must(sp.CurrentSet(ctx))
		}
	}
	return set, movedAt
}

func TestSpielAGMovesTheEntriesAndResetsTheDroppedOnes(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	w, w0, set, opt := sparseParam(t, ctx, 1)
	defer opt.Close()
	first := must(set.Indices())
	opts := DefaultSpielOptions(12)
	opts.ReselectInterval, opts.AccumulationSteps = 4, 2
	sp := must(NewSpiel(ctx, opt, 0, opts))
	if sp.ParamIndex() != 0 || sp.Optimizer() != opt {
		t.Fatal("ParamIndex/Optimizer")
	}
	set, movedAt := trainSpiel(t, ctx, sp, opt, set, 7, 100)
	defer set.Close()
	// Reselections after steps M + j N = 2, 6; the first replaces everything (FirstFull).
	if len(movedAt) == 0 || movedAt[0] != 2 || (len(movedAt) == 2 && movedAt[1] != 6) || len(movedAt) > 2 {
		t.Fatalf("the set moved after steps %v", movedAt)
	}
	st := must(sp.Stats())
	if st.Steps != 7 || st.Count != spielK || st.Reselections != 2 || st.NextReselection != 10 || st.LastStep != 6 {
		t.Fatalf("stats %+v", st)
	}
	if st.DenseGradients != 2 || st.Observations != 4 { // one dense dW per window of 2 observations
		t.Fatalf("stats %+v", st)
	}
	near(t, "last rate", 0.2*(1-6.0/12), st.LastRate)
	if st.LastTarget != 2 || st.LastDropped != st.LastRegrown {
		t.Fatalf("stats %+v", st)
	}
	current := must(set.Indices())
	same := len(current) == len(first)
	for i := range current {
		same = same && current[i] == first[i]
	}
	if len(current) != spielK || same {
		t.Fatalf("current set %v (first %v)", current, first)
	}
	again := must(sp.CurrentSet(ctx))
	if got := must(again.Indices()); len(got) != spielK || got[0] != current[0] || got[spielK-1] != current[spielK-1] {
		t.Fatalf("CurrentSet = %v, want %v", got, current)
	}
	again.Close()
	// Dropped entries are back at their base values: the weight moved at the current entries only.
	if !changedOnlyAt(w.Data(), w0, current) {
		t.Fatal("the weight changed outside the current entries")
	}
	for _, step := range []int64{1, 3, 5, 9, 12} {
		near(t, "rate", 0.2*(1-float64(step)/12), must(sp.Rate(step)))
	}
	if p := must(sp.Rate(2)); p != 1 {
		t.Fatalf("Rate(2) = %g, want 1 (FirstFull)", p)
	}
	// The schedule keeps the optimizer: closing the optimizer first is refused.
	var e *Error
	if err := opt.Close(); !errors.As(err, &e) || e.Status != ErrState {
		t.Fatalf("Optimizer.Close with an open schedule: %v", err)
	}
	sp.Close()
	sp.Close() // idempotent
	cosine := DefaultSpielOptions(12)
	cosine.Decay, cosine.FirstFull, cosine.InitialRate = SpielDecayCosine, false, 0.5
	near(t, "cosine rate", 0.5*(1+math.Cos(math.Pi*2/12))/2, must(SpielRate(cosine, 2)))
}

func TestSpielMAWithActivationSums(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	w, w0, set, opt := sparseParam(t, ctx, 3)
	defer opt.Close()
	opts := DefaultSpielOptions(12)
	opts.Regrow, opts.MASource = SpielMA, SpielMAActivations
	opts.ReselectInterval, opts.AccumulationSteps, opts.FirstFull, opts.InitialRate = 4, 2, false, 0.5
	sp := must(NewSpiel(ctx, opt, 0, opts))
	defer sp.Close()
	set, movedAt := trainSpiel(t, ctx, sp, opt, set, 6, 200)
	defer set.Close()
	st := must(sp.Stats())
	if st.Steps != 6 || st.Reselections != 2 || st.DenseGradients != 0 || st.Count != spielK { // MA forms no dense dW
		t.Fatalf("stats %+v", st)
	}
	if want := int64(math.Floor(0.5 * (1 - 6.0/12) * spielK)); st.LastTarget != want {
		t.Fatalf("last target %d, want %d", st.LastTarget, want)
	}
	if len(movedAt) == 0 || must(set.Count()) != spielK {
		t.Fatalf("moved after %v, count %d", movedAt, must(set.Count()))
	}
	if !changedOnlyAt(w.Data(), w0, must(set.Indices())) {
		t.Fatal("the weight changed outside the current entries")
	}
}

func TestSpielBadOptionsAreErrorsWithTheStatus(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	_, _, set, opt := sparseParam(t, ctx, 5)
	defer set.Close()
	defer opt.Close()
	expect := func(what string, err error, status int, text string) {
		t.Helper()
		var e *Error
		if !errors.As(err, &e) || e.Status != status || !strings.Contains(e.Message, text) {
			t.Fatalf("%s: got %v, want status %d mentioning %q", what, err, status, text)
		}
	}
	_, err := NewSpiel(ctx, opt, 0, DefaultSpielOptions(0))
	expect("TotalSteps 0", err, ErrInvalidArgument, "total_steps")
	bad := DefaultSpielOptions(12)
	bad.ReselectInterval, bad.AccumulationSteps = 4, 5
	_, err = NewSpiel(ctx, opt, 0, bad)
	expect("M > N", err, ErrInvalidArgument, "accumulation_steps")
	ma := DefaultSpielOptions(12)
	ma.Regrow = SpielMA // the SM3 source on an AdamW optimizer
	_, err = NewSpiel(ctx, opt, 0, ma)
	expect("MA on AdamW", err, ErrInvalidArgument, "SM3")
	_, err = NewSpiel(ctx, opt, 1, DefaultSpielOptions(12))
	expect("index out of range", err, ErrInvalidArgument, "param_index")
	_, err = SpielRate(DefaultSpielOptions(12), 0)
	expect("step 0", err, ErrInvalidArgument, "step")

	sp := must(NewSpiel(ctx, opt, 0, DefaultSpielOptions(12)))
	defer sp.Close()
	x := matrix(t, 9, 3, spielCols+1)
	dy := matrix(t, 10, 3, spielRows)
	var e *Error
	if err := sp.Observe(ctx, x, dy); !errors.As(err, &e) || e.Status != ErrShape {
		t.Fatalf("Observe with a wrong x: %v", err)
	}
	if moved := must(sp.Step(ctx)); moved {
		t.Fatal("the set moved at step 1")
	}
}

func TestLiftRefresh(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	w, _, set, opt := sparseParam(t, ctx, 7)
	defer set.Close()
	defer opt.Close()
	old := must(set.Indices())
	ones := must(FromSlice(make([]float32, spielK), spielK))
	defer ones.Close()
	for i := range ones.Data() {
		ones.Data()[i] = 1
	}
	must(opt.Step(0.05, []*Tensor{ones}))
	fresh, kept, err := LiftRefresh(ctx, opt, 0, DefaultLiftOptions(2, spielK))
	if err != nil {
		if e, isErr := err.(*Error); isErr && e.Status == ErrUnsupported {
			t.Skip("no LAPACK in this libs2ft")
		}
		t.Fatal(err)
	}
	defer fresh.Close()
	idx := must(fresh.Indices())
	want := must(LiftSelect(ctx, w, DefaultLiftOptions(2, spielK)))
	if len(idx) != spielK || len(want) != spielK {
		t.Fatalf("LiftRefresh selected %v", idx)
	}
	var stayed int64
	for i := range idx {
		if idx[i] != want[i] {
			t.Fatalf("LiftRefresh = %v, LiftSelect = %v", idx, want)
		}
		for _, o := range old {
			if o == idx[i] {
				stayed++
			}
		}
	}
	if kept != stayed {
		t.Fatalf("kept = %d, want %d", kept, stayed)
	}
	before := append([]float32(nil), w.Data()...)
	must(opt.Step(0.05, []*Tensor{ones})) // the new set's entries move
	if !changedOnlyAt(w.Data(), before, idx) {
		t.Fatal("the step changed entries outside the new set")
	}
	both := DefaultLiftOptions(2, spielK)
	both.Density = 0.5
	_, _, err = LiftRefresh(ctx, opt, 0, both)
	var e *Error
	if !errors.As(err, &e) || e.Status != ErrInvalidArgument || !strings.Contains(e.Message, "both set") {
		t.Fatalf("count and density together: %v", err)
	}
}
