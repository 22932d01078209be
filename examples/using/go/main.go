// Command adapterswitch saves two adapters for a 1-layer model, loads them
// back from their files, applies the first to the model's down_proj,
// switches to the second, removes it and checks that the base weights are
// restored bit-exactly.
package main

import (
	"fmt"
	"log"
	"math"
	"os"

	"s2ft.dev/s2ft"
)

const dModel, dFF = 4, 8

// saveAdapter writes an adapter on down_proj columns lines (base order) to path.
func saveAdapter(shape s2ft.ModelShape, name string, lines []int64, step float32, base *s2ft.Tensor, path string) error {
	d := make([]float32, dModel*len(lines))
	for i := range d {
		d[i] = step * float32(i+1)
	}
	delta, err := s2ft.FromSlice(d, dModel, int64(len(lines)))
	if err != nil {
		return err
	}
	defer delta.Close()
	a, err := s2ft.NewAdapter(shape, name, 1)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Set(0, s2ft.TargetDown, lines, delta, base); err != nil {
		return err
	}
	return a.Save(path)
}

func run() error {
	shape := s2ft.ModelShape{NLayers: 1, DModel: dModel, NHeads: 2, NKVHeads: 1, HeadDim: 2, DFF: dFF}
	down, err := s2ft.NewTensor(dModel, dFF) // C memory: the model edits it in place
	if err != nil {
		return err
	}
	defer down.Close()
	w := down.Data()
	for i := range w {
		w[i] = float32(i%7)*0.25 - 0.75
	}
	base := append([]float32(nil), w...)

	if err := saveAdapter(shape, "first", []int64{1, 5}, 0.125, down, "first.safetensors"); err != nil {
		return err
	}
	if err := saveAdapter(shape, "second", []int64{5, 6}, -0.5, down, "second.safetensors"); err != nil {
		return err
	}
	defer os.Remove("first.safetensors")
	defer os.Remove("second.safetensors")
	first, err := s2ft.LoadAdapter("first.safetensors")
	if err != nil {
		return err
	}
	defer first.Close()
	second, err := s2ft.LoadAdapter("second.safetensors")
	if err != nil {
		return err
	}
	defer second.Close()

	ctx, err := s2ft.NewContext()
	if err != nil {
		return err
	}
	defer ctx.Close()
	model, err := s2ft.NewModel(ctx, shape, []s2ft.LayerWeights{{Down: down}})
	if err != nil {
		return err
	}
	defer model.Close()
	if err := model.Apply(first, s2ft.DefaultScale); err != nil {
		return err
	}
	applied := w[1] == base[1]+0.125 // row 0 of column 1: the first delta value
	if err := model.Switch(second, s2ft.DefaultScale); err != nil {
		return err
	}
	switched := w[1] == base[1] && w[6] == base[6]-1
	if err := model.Remove(); err != nil {
		return err
	}
	restored := true
	for i := range w {
		restored = restored && math.Float32bits(w[i]) == math.Float32bits(base[i])
	}
	if !applied || !switched || !restored {
		return fmt.Errorf("wrong weights (applied %v, switched %v, restored %v)", applied, switched, restored)
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		log.Fatal("Go: ", err)
	}
	fmt.Println("Go: loaded 'first' and 'second' from files, applied, switched, removed: base restored bit-exactly")
}
