package s2ft

import (
	"math"
	"path/filepath"
	"testing"
	"unsafe"
)

// matmul is C = A B in float64 for row-major A [m, k], B [k, n].
func matmul(a, b []float32, m, k, n int) []float64 {
	c := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for p := 0; p < k; p++ {
			for j := 0; j < n; j++ {
				c[i*n+j] += float64(a[i*k+p]) * float64(b[p*n+j])
			}
		}
	}
	return c
}

// relErr is max |got - want| / max |want|.
func relErr(got, want []float64) float64 {
	scale, err := 1e-30, 0.0
	for i := range want {
		scale = math.Max(scale, math.Abs(want[i]))
		err = math.Max(err, math.Abs(got[i]-want[i]))
	}
	return err / scale
}

func widen(v []float32) []float64 {
	d := make([]float64, len(v))
	for i, x := range v {
		d[i] = float64(x)
	}
	return d
}

// zeros is a zero-filled f32 tensor, closed when the test ends.
func zeros(t *testing.T, shape ...int64) *Tensor {
	t.Helper()
	x := must(NewTensor(shape...))
	t.Cleanup(x.Close)
	return x
}

// tensorOf is a C-memory copy of data, closed when the test ends.
func tensorOf(t *testing.T, data []float32, shape ...int64) *Tensor {
	t.Helper()
	x := must(FromSlice(data, shape...))
	t.Cleanup(x.Close)
	return x
}

func TestLowRankAdapterEntries(t *testing.T) {
	noLeaks(t)
	a := must(NewAdapter(shape, "lr", 1))
	defer a.Close()
	if w, n, err := a.LowRankInfo(); err != nil || w != 0 || n != 0 {
		t.Fatalf("empty adapter: %d %d %v", w, n, err)
	}
	if e, err := a.LowRank(0, WeightQ); err != nil || e != nil {
		t.Fatalf("no entry: %+v %v", e, err)
	}
	qr, qc := weightDims(WeightQ)
	gr, gc := weightDims(WeightGate)
	bv, av := randoms(30, int(qr*3)), randoms(31, int(3*qc))
	bgv, agv := randoms(32, int(gr)), randoms(33, int(gc))
	q := tensorOf(t, randoms(34, int(qr*qc)), qr, qc)
	ok(t, a.SetLowRank(1, WeightQ, tensorOf(t, bv, qr, 3), tensorOf(t, av, 3, qc), q))
	ok(t, a.SetLowRank(0, WeightGate, tensorOf(t, bgv, gr, 1), tensorOf(t, agv, 1, gc), nil))

	e := must(a.LowRank(1, WeightQ))
	if e.Rank != 3 || e.Fingerprint == 0 {
		t.Fatalf("q entry rank %d fingerprint %x", e.Rank, e.Fingerprint)
	}
	sameBits(t, "q b", bv, e.B)
	sameBits(t, "q a", av, e.A)
	g := must(a.LowRank(0, WeightGate))
	if g.Rank != 1 || g.Fingerprint != 0 {
		t.Fatalf("gate entry rank %d fingerprint %x", g.Rank, g.Fingerprint)
	}
	sameBits(t, "gate b", bgv, g.B)
	sameBits(t, "gate a", agv, g.A)
	if none := must(a.LowRank(0, WeightQ)); none != nil {
		t.Fatalf("layer 0 q: %+v", none)
	}
	w, n, err := a.LowRankInfo()
	ok(t, err)
	if w != WeightBit(WeightQ)|WeightBit(WeightGate) || n != 2 {
		t.Fatalf("low-rank info %b %d", w, n)
	}
	if _, _, targets, _ := a.Info(); targets != 0 {
		t.Fatalf("low-rank entries counted as structured targets: %b", targets)
	}

	// The rank alone, and a copy into a tensor of the caller's.
	if k, fp, err := a.LowRankInto(1, WeightQ, nil, nil); err != nil || k != 3 || fp != e.Fingerprint {
		t.Fatalf("LowRankInto: %d %x %v", k, fp, err)
	}
	b2 := zeros(t, qr, 3)
	must2(a.LowRankInto(1, WeightQ, b2, nil))
	sameBits(t, "b copied out", bv, b2.Data())
	_, _, err = a.LowRankInto(0, WeightQ, b2, nil)
	wantStatus(t, err, ErrState, "no low-rank entry")

	// Saved and loaded back (adapter file format v4) bit-exactly.
	path := filepath.Join(t.TempDir(), "lr.safetensors")
	ok(t, a.Save(path))
	loaded := must(LoadAdapter(path))
	defer loaded.Close()
	for _, lw := range [][2]int{{1, WeightQ}, {0, WeightGate}} {
		x, y := must(a.LowRank(lw[0], lw[1])), must(loaded.LowRank(lw[0], lw[1]))
		if y == nil || x.Rank != y.Rank || x.Fingerprint != y.Fingerprint {
			t.Fatalf("loaded %+v, saved %+v", y, x)
		}
		sameBits(t, "loaded b", x.B, y.B)
		sameBits(t, "loaded a", x.A, y.A)
	}

	ok(t, a.ClearLowRank(0, WeightGate))
	ok(t, a.ClearLowRank(0, WeightK)) // none: not an error
	if w, n, _ := a.LowRankInfo(); w != WeightBit(WeightQ) || n != 1 {
		t.Fatalf("after clear: %b %d", w, n)
	}
}

func TestLowRankAdapterSorsa(t *testing.T) {
	noLeaks(t)
	rows64, cols64 := weightDims(WeightDown)
	rows, cols, r := int(rows64), int(cols64), 3
	u0, vt0, s0 := randoms(40, rows*r), randoms(41, r*cols), randoms(42, r)
	for i := range s0 {
		s0[i] = float32(math.Abs(float64(s0[i]))) + 0.5
	}
	du, ds, dvt := randoms(43, rows*r), randoms(44, r), randoms(45, r*cols)
	u, s, vt := make([]float32, len(u0)), make([]float32, r), make([]float32, len(vt0))
	for i := range u {
		u[i] = u0[i] + 0.1*du[i]
	}
	for i := range s {
		s[i] = s0[i] + 0.1*ds[i]
	}
	for i := range vt {
		vt[i] = vt0[i] + 0.1*dvt[i]
	}
	R := int64(r)
	a := must(NewAdapter(shape, "sorsa", 1))
	defer a.Close()
	ok(t, a.SetSorsa(0, WeightDown, tensorOf(t, u0, rows64, R), tensorOf(t, s0, R), tensorOf(t, vt0, R, cols64),
		tensorOf(t, u, rows64, R), tensorOf(t, s, 1, R), tensorOf(t, vt, R, cols64),
		tensorOf(t, randoms(46, rows*cols), rows64, cols64)))
	e := must(a.LowRank(0, WeightDown))
	if e.Rank != 2*r || e.Fingerprint == 0 {
		t.Fatalf("sorsa entry rank %d fingerprint %x", e.Rank, e.Fingerprint)
	}
	got, want := matmul(e.B, e.A, rows, 2*r, cols), make([]float64, rows*cols)
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			for p := 0; p < r; p++ {
				want[i*cols+j] += float64(u[i*r+p])*float64(s[p])*float64(vt[p*cols+j]) -
					float64(u0[i*r+p])*float64(s0[p])*float64(vt0[p*cols+j])
			}
		}
	}
	if err := relErr(got, want); err > 1e-5 {
		t.Fatalf("b a vs u diag(s) vt - u0 diag(s0) vt0: relative error %g", err)
	}

	// Factors of different ranks: ErrShape; not f32: ErrDType; nothing changes.
	wantStatus(t, a.SetSorsa(1, WeightDown, tensorOf(t, u0, rows64, R-1), tensorOf(t, s0, R), tensorOf(t, vt0, R, cols64),
		tensorOf(t, u, rows64, R), tensorOf(t, s, R), tensorOf(t, vt, R, cols64), nil), ErrShape, "")
	u0f := tensorOf(t, u0, rows64, R)
	u0bf16 := must(FromPointer(unsafe.Pointer(u0f.data), BF16, DeviceCPU, 0, rows64, R)) //nolint:govet // u0f's C memory, read as bf16
	defer u0bf16.Close()
	wantStatus(t, a.SetSorsa(1, WeightDown, u0bf16, tensorOf(t, s0, R), tensorOf(t, vt0, R, cols64),
		tensorOf(t, u, rows64, R), tensorOf(t, s, R), tensorOf(t, vt, R, cols64), nil), ErrDtype, "f32")
	if e1 := must(a.LowRank(1, WeightDown)); e1 != nil {
		t.Fatalf("a failed SetSorsa left an entry: %+v", e1)
	}
}

func TestLowRankAdapterApplyRemove(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	qr, qc := weightDims(WeightQ)
	ur, uc := weightDims(WeightUp)
	q0, up0 := randoms(50, int(qr*qc)), randoms(51, int(ur*uc))
	q, up := tensorOf(t, q0, qr, qc), tensorOf(t, up0, ur, uc)
	bq, aq := randoms(52, int(qr*2)), randoms(53, int(2*qc))
	bu, au := randoms(54, int(ur*3)), randoms(55, int(3*uc))
	a := must(NewAdapter(shape, "lr", 1))
	defer a.Close()
	ok(t, a.SetLowRank(1, WeightQ, tensorOf(t, bq, qr, 2), tensorOf(t, aq, 2, qc), q))
	ok(t, a.SetLowRank(0, WeightUp, tensorOf(t, bu, ur, 3), tensorOf(t, au, 3, uc), up))

	model := must(NewModel(ctx, shape, []LayerWeights{{Up: up}, {Q: q}}))
	for _, scale := range []float64{1, 0.5} {
		ok(t, model.Apply(a, scale))
		for _, c := range []struct {
			what       string
			w          *Tensor
			w0, b, f   []float32
			rows, k, n int
		}{{"q", q, q0, bq, aq, int(qr), 2, int(qc)}, {"up", up, up0, bu, au, int(ur), 3, int(uc)}} {
			want := matmul(c.b, c.f, c.rows, c.k, c.n)
			for i := range want {
				want[i] = float64(c.w0[i]) + scale*want[i]
			}
			if err := relErr(widen(c.w.Data()), want); err > 1e-5 {
				t.Fatalf("%s at scale %g: relative error %g", c.what, scale, err)
			}
		}
		ok(t, model.Remove())
		sameBits(t, "restored q", q0, q.Data())
		sameBits(t, "restored up", up0, up.Data())
	}
	model.Close()

	// Another base: the whole-weight fingerprint differs.
	q.Data()[0]++
	other := must(NewModel(ctx, shape, []LayerWeights{{Up: up}, {Q: q}}))
	defer other.Close()
	wantStatus(t, other.Apply(a, 1), ErrFormat, "fingerprint")
	sameBits(t, "up after a refused apply", up0, up.Data())
}

func TestLowRankAdapterErrors(t *testing.T) {
	noLeaks(t)
	kr, kc := weightDims(WeightK)
	bv, av := randoms(60, int(kr*2)), randoms(61, int(2*kc))
	b, f := tensorOf(t, bv, kr, 2), tensorOf(t, av, 2, kc)
	a := must(NewAdapter(shape, "lr", 1))
	defer a.Close()
	ok(t, a.SetLowRank(0, WeightK, b, f, nil))

	// Only one factor.
	wantStatus(t, a.SetLowRank(0, WeightK, b, nil, nil), ErrInvalidArgument, "a is NULL")
	wantStatus(t, a.SetLowRank(0, WeightK, nil, f, nil), ErrInvalidArgument, "b is NULL")
	// Wrong shapes: b's rows, a's rank, the base.
	wantStatus(t, a.SetLowRank(0, WeightK, tensorOf(t, bv, kr-1, 2), f, nil), ErrShape, "")
	wantStatus(t, a.SetLowRank(0, WeightK, b, tensorOf(t, av, 1, kc), nil), ErrShape, "")
	wantStatus(t, a.SetLowRank(0, WeightK, b, f, zeros(t, kc, kr)), ErrShape, "base")
	// A value not finite.
	bad := append([]float32(nil), bv...)
	bad[3] = float32(math.NaN())
	wantStatus(t, a.SetLowRank(0, WeightK, tensorOf(t, bad, kr, 2), f, nil), ErrInvalidArgument, "non-finite")
	kept := must(a.LowRank(0, WeightK))
	sameBits(t, "kept b", bv, kept.B)
	sameBits(t, "kept a", av, kept.A)

	// A low-rank entry where sparse entries are, sparse entries where a
	// low-rank entry is, and a low-rank entry beside a structured one.
	gr, gc := weightDims(WeightGate)
	ok(t, a.SetSparse(1, WeightGate, []int64{3, 4}, tensorOf(t, []float32{1, 1}, 2), nil))
	wantStatus(t, a.SetLowRank(1, WeightGate, zeros(t, gr, 1), zeros(t, 1, gc), nil), ErrInvalidArgument, "sparse entries")
	if e := must(a.LowRank(1, WeightGate)); e != nil {
		t.Fatalf("a refused SetLowRank left an entry: %+v", e)
	}
	wantStatus(t, a.SetSparse(0, WeightK, []int64{0}, tensorOf(t, []float32{1}, 1), nil), ErrInvalidArgument, "")
	ok(t, a.Set(1, TargetV, []int64{0}, tensorOf(t, make([]float32, shape.DModel), 1, int64(shape.DModel)), nil))
	vr, vc := weightDims(WeightV)
	wantStatus(t, a.SetLowRank(1, WeightV, tensorOf(t, make([]float32, vr), vr, 1), tensorOf(t, make([]float32, vc), 1, vc), nil),
		ErrInvalidArgument, "structured entry")
	if w, n, _ := a.LowRankInfo(); w != WeightBit(WeightK) || n != 1 {
		t.Fatalf("low-rank info after the errors: %b %d", w, n)
	}
}
