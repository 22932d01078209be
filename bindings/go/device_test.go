package s2ft

import (
	"errors"
	"math/rand"
	"testing"
)

func TestDeviceCount(t *testing.T) {
	if n := must(DeviceCount(DeviceCPU)); n != 1 {
		t.Fatalf("DeviceCount(CPU) = %d, want 1", n)
	}
	if n := must(DeviceCount(DeviceCUDA)); n < 0 {
		t.Fatalf("DeviceCount(CUDA) = %d", n)
	}
}

func TestCPUContextDeviceCalls(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	ok(t, ctx.Synchronize())
	if n := must(ctx.WorkspaceNeeded()); n != 0 {
		t.Fatalf("WorkspaceNeeded = %d on the CPU", n)
	}
	if s := must(ctx.Stream()); s != nil {
		t.Fatalf("Stream = %v on the CPU", s)
	}
	ok(t, ctx.SetDeltaPath(DeltaPathDense))
	ok(t, ctx.SetDeltaPath(DeltaPathAuto))
	var e *Error
	if err := ctx.SetDeltaPath(DeltaPathSparse); !errors.As(err, &e) || e.Status != ErrUnsupported {
		t.Fatalf("SetDeltaPath(Sparse) on the CPU: %v", err)
	}
	if err := ctx.SetStream(nil); !errors.As(err, &e) || e.Status != ErrUnsupported || e.Message == "" {
		t.Fatalf("SetStream on the CPU: %v", err)
	}
	if err := ctx.SetWorkspace(nil, 0); !errors.As(err, &e) || e.Status != ErrUnsupported {
		t.Fatalf("SetWorkspace on the CPU: %v", err)
	}
}

func TestSparseDeltaForward(t *testing.T) {
	noLeaks(t)
	const rows, cols, T = 7, 5, 3
	r := rand.New(rand.NewSource(5))
	offsets := []int64{0}
	var indices []int64
	var values []float32
	dense := make([]float64, rows*cols)
	for i := 0; i < rows; i++ {
		for c := 0; c < cols; c++ {
			if r.Intn(2) == 0 {
				v := r.Float32()*2 - 1
				indices = append(indices, int64(c))
				values = append(values, v)
				dense[i*cols+c] = float64(v)
			}
		}
		offsets = append(offsets, int64(len(indices)))
	}
	ctx := must(NewContext())
	defer ctx.Close()
	d := must(NewSparseDelta(ctx, rows, cols, offsets, indices, values))
	defer d.Close()
	gr, gc, nnz, err := d.Info()
	ok(t, err)
	if gr != rows || gc != cols || nnz != int64(len(values)) {
		t.Fatalf("Info = (%d, %d, %d)", gr, gc, nnz)
	}
	xs, ys := randoms(1, T*cols), randoms(2, T*rows)
	x := must(FromSlice(xs, T, cols))
	defer x.Close()
	y := must(FromSlice(ys, T, rows))
	defer y.Close()
	const scale = 0.5
	ok(t, d.Forward(ctx, scale, x, y))
	got := y.Data()
	for i := 0; i < T; i++ {
		for o := 0; o < rows; o++ {
			want := float64(ys[i*rows+o])
			for c := 0; c < cols; c++ {
				want += scale * float64(xs[i*cols+c]) * dense[o*cols+c]
			}
			near(t, "y", want, float64(got[i*rows+o]))
		}
	}
}

func TestSparseDeltaBadOffsets(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	// The offsets end at 3 but there are 2 entries.
	_, err := NewSparseDelta(ctx, 2, 3, []int64{0, 1, 3}, []int64{0, 2}, []float32{1, 2})
	var e *Error
	if !errors.As(err, &e) || e.Status != ErrInvalidArgument || !containsStr(e.Message, "row_offsets") {
		t.Fatalf("bad offsets: %v", err)
	}
}

func TestSparseDeltaFromAdapter(t *testing.T) {
	noLeaks(t)
	ctx := must(NewContext())
	defer ctx.Close()
	a := must(NewAdapter(ModelShape{NLayers: 1, DModel: 3, NHeads: 1, NKVHeads: 1, HeadDim: 3, DFF: 4}, "a", 1))
	defer a.Close()
	delta := must(FromSlice([]float32{1, 2, 3, 4, 5, 6}, 3, 2)) // Down [d_model 3, k 2]
	defer delta.Close()
	ok(t, a.Set(0, TargetDown, []int64{1, 3}, delta, nil))
	ok(t, a.Upload(ctx))
	d := must(SparseDeltaFromAdapter(ctx, a, 0, TargetDown, nil))
	defer d.Close()
	if _, _, nnz, err := d.Info(); err != nil || nnz != 6 {
		t.Fatalf("nnz = %d, %v", nnz, err)
	}
	x := must(FromSlice([]float32{1, 10, 100, 1000}, 1, 4))
	defer x.Close()
	y := must(NewTensor(1, 3))
	defer y.Close()
	ok(t, d.Forward(ctx, 1, x, y))
	for i, want := range []float32{2010, 4030, 6050} {
		if y.Data()[i] != want {
			t.Fatalf("y = %v", y.Data())
		}
	}
}
