package s2ft

import (
	"fmt"
	"math"
	"strings"
	"unsafe"

	"s2ft.dev/s2ft/internal/capi"
)

// Checkpoint is a Hugging Face checkpoint opened for reading: a folder with
// config.json and model.safetensors (or the shards that
// model.safetensors.index.json lists), or one .safetensors file. Its files
// are memory-mapped privately: nothing is read until used, and writes
// through views or by a Model made from it change this process's copy only,
// never the files (Write writes a new folder).
//
// Lifetime: views (Tensor) and TensorData slices point into the checkpoint's
// memory and are valid until Close. Views keep a reference to the
// checkpoint; after Close they are invalidated (Data returns nil, the
// library refuses them). A TensorData slice cannot be invalidated: copy it
// if it must outlive the checkpoint. Models made from a checkpoint must be
// closed before it (Close returns an ErrState error while one is open).
type Checkpoint struct {
	p      capi.Struct_SS_s2ft_checkpoint
	views  map[string]*Tensor
	descs  []capi.S2ft_tensor // the views' descriptors, freed by Close
	models int                // open models made from it
}

// TensorInfo describes one stored tensor.
type TensorInfo struct {
	Name   string  // e.g. model.layers.0.mlp.down_proj.weight
	DType  string  // the safetensors dtype name: "F32", "BF16", "I64", ...
	Shape  []int64 // the extents (empty for a scalar)
	NBytes uint64  // the size of its data in bytes
}

// WriteOptions configures Checkpoint.Write; the zero value (or nil) is the
// library's default: the source's files, headers and tensor order kept, the
// folder's other files copied.
type WriteOptions struct {
	// MaxShardBytes, when not 0, reshards into files of at most this many
	// data bytes (a larger tensor gets a file of its own) with an index.
	MaxShardBytes uint64
	// SkipOtherFiles leaves out the folder's other regular files
	// (tokenizer, generation config, ...), which are copied by default.
	SkipOtherFiles bool
	// Exclude names files of the folder not to copy.
	Exclude []string
	// Progress, when not nil, is called after each tensor is written with
	// the bytes written so far and their total (e.g. for a progress bar).
	// If it panics, later reports are skipped and Write panics once the
	// library has returned.
	Progress func(doneBytes, totalBytes uint64)
}

func checkNoNUL(what, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return &Error{Status: ErrInvalidArgument, Message: fmt.Sprintf("%s %q contains a NUL byte", what, s)}
	}
	return nil
}

// cStrings copies strings into a C array (free with capi.S2ft_go_strings_free).
func cStrings(what string, list []string) (uintptr, error) {
	arr := capi.S2ft_go_strings_new(int64(len(list)))
	if arr == 0 {
		return 0, &Error{Status: ErrOutOfMemory, Message: what + ": allocation failed"}
	}
	for i, s := range list {
		err := checkNoNUL(what, s)
		if err == nil && capi.S2ft_go_strings_set(arr, int64(i), s) == 0 {
			err = &Error{Status: ErrOutOfMemory, Message: what + ": allocation failed"}
		}
		if err != nil {
			capi.S2ft_go_strings_free(arr, int64(len(list)))
			return 0, err
		}
	}
	return arr, nil
}

// OpenCheckpoint opens the checkpoint at path (a folder or one .safetensors
// file); every header, offset, dtype and the shard index are checked now.
func OpenCheckpoint(path string) (*Checkpoint, error) {
	if err := checkNoNUL("path", path); err != nil {
		return nil, err
	}
	cell := capi.New_checkpoint_out()
	defer capi.Delete_checkpoint_out(cell)
	if err := call(func() int { return capi.S2ft_checkpoint_open(path, cell) }); err != nil {
		return nil, err
	}
	return &Checkpoint{p: capi.Checkpoint_out_value(cell), views: map[string]*Tensor{}}, nil
}

// Close closes the checkpoint and unmaps its files (idempotent), and
// invalidates its views. It returns an ErrState error, and closes nothing,
// while a model made from it is open.
func (c *Checkpoint) Close() error {
	if c == nil || c.p == nil {
		return nil
	}
	if c.models > 0 {
		return &Error{Status: ErrState, Message: fmt.Sprintf("close the %d model(s) made from this checkpoint first", c.models)}
	}
	for _, v := range c.views {
		v.invalidate()
	}
	for _, d := range c.descs {
		capi.S2ft_go_free(d.Swigcptr())
	}
	c.views, c.descs = nil, nil
	capi.S2ft_checkpoint_destroy(c.p)
	c.p = nil
	return nil
}

// Shape is the model shape of a LLaMA-family checkpoint (llama, mistral,
// qwen2), from config.json, checked against the projection weights. A
// checkpoint opened as one file has no configuration (ErrState).
func (c *Checkpoint) Shape() (ModelShape, error) {
	n := capi.NewS2ft_model_shape()
	defer capi.DeleteS2ft_model_shape(n)
	if err := call(func() int { return capi.S2ft_checkpoint_shape(c.p, n) }); err != nil {
		return ModelShape{}, err
	}
	return ModelShape{NLayers: n.GetN_layers(), DModel: n.GetD_model(), NHeads: n.GetN_heads(),
		NKVHeads: n.GetN_kv_heads(), HeadDim: n.GetHead_dim(), DFF: n.GetD_ff()}, nil
}

// Config is the text of config.json; ok is false when the checkpoint has
// none (opened as one file).
func (c *Checkpoint) Config() (json string, ok bool) {
	var status, present int64
	json = capi.S2ft_go_checkpoint_config(c.p, &status, &present)
	return json, status == OK && present != 0
}

// TensorCount is the number of tensors in all its files.
func (c *Checkpoint) TensorCount() int {
	var n int64
	if call(func() int { return capi.S2ft_checkpoint_tensor_count(c.p, &n) }) != nil {
		return 0
	}
	return int(n)
}

// Files lists its safetensors files inside the folder (one unless sharded),
// in the index's order.
func (c *Checkpoint) Files() ([]string, error) {
	var n int64
	if err := call(func() int { return capi.S2ft_checkpoint_file_count(c.p, &n) }); err != nil {
		return nil, err
	}
	out := make([]string, 0, n)
	for i := int64(0); i < n; i++ {
		var name string
		if err := call(func() int {
			var status int64
			name = capi.S2ft_go_checkpoint_file(c.p, i, &status)
			return int(status)
		}); err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, nil
}

// TensorInfo describes tensor index (shards in index order, file order
// within a shard).
func (c *Checkpoint) TensorInfo(index int) (TensorInfo, error) {
	var info TensorInfo
	for which, dst := range []*string{&info.Name, &info.DType} {
		if err := call(func() int {
			var status int64
			*dst = capi.S2ft_go_checkpoint_tensor_string(c.p, int64(index), which, &status)
			return int(status)
		}); err != nil {
			return TensorInfo{}, err
		}
	}
	// Plain locals: cgo refuses pointers into memory holding Go pointers (info).
	var ndim int64
	var nbytes uint64
	if err := call(func() int {
		return capi.S2ft_go_checkpoint_tensor_extents(c.p, int64(index), &ndim, nil, 0, &nbytes)
	}); err != nil {
		return TensorInfo{}, err
	}
	shape := make([]int64, ndim)
	if ndim > 0 {
		if err := call(func() int {
			return capi.S2ft_go_checkpoint_tensor_extents(c.p, int64(index), &ndim, &shape[0], ndim, nil)
		}); err != nil {
			return TensorInfo{}, err
		}
	}
	info.Shape, info.NBytes = shape, nbytes
	return info, nil
}

// Tensors describes every stored tensor, in TensorInfo's order.
func (c *Checkpoint) Tensors() ([]TensorInfo, error) {
	n := c.TensorCount()
	out := make([]TensorInfo, 0, n)
	for i := 0; i < n; i++ {
		info, err := c.TensorInfo(i)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Tensor is a zero-copy view of the F32, F16 or BF16 tensor name, owned by
// the checkpoint (Close on it does nothing) and valid until the checkpoint
// is closed. Writes through it change this process's copy, which Write
// writes. Another dtype is ErrDtype (read it with TensorData); an unknown
// name ErrInvalidArgument.
func (c *Checkpoint) Tensor(name string) (*Tensor, error) {
	if v, ok := c.views[name]; ok {
		return v, nil
	}
	if err := checkNoNUL("tensor name", name); err != nil {
		return nil, err
	}
	desc := capi.S2ft_go_tensors_new(1)
	if err := call(func() int { return capi.S2ft_checkpoint_tensor(c.p, name, desc) }); err != nil {
		capi.S2ft_go_free(desc.Swigcptr())
		return nil, err
	}
	c.descs = append(c.descs, desc)
	v := viewOf(desc, c)
	c.views[name] = v
	return v, nil
}

// TensorData is the raw little-endian bytes of tensor name, of any dtype,
// as a slice over the checkpoint's memory (zero-copy): valid until the
// checkpoint is closed, and not to be written.
func (c *Checkpoint) TensorData(name string) ([]byte, error) {
	if err := checkNoNUL("tensor name", name); err != nil {
		return nil, err
	}
	var data uintptr
	var n uint64
	if err := call(func() int { return capi.S2ft_checkpoint_tensor_data(c.p, name, &data, &n) }); err != nil {
		return nil, err
	}
	if data == 0 || n == 0 {
		return []byte{}, nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(data)), n), nil //nolint:govet // C memory
}

// Write writes a copy of the checkpoint into the folder outDir (made if
// missing; not the checkpoint's own): every tensor as it is now (writes
// through views and applied adapters included), except those named in
// replacements, whose data is replaced by the given tensors (the tensor's
// shape; F32, F16 or BF16, rounded to the stored dtype). opts nil means the
// defaults. Each file is written under a temporary name and renamed.
func (c *Checkpoint) Write(outDir string, replacements map[string]*Tensor, opts *WriteOptions) error {
	if opts == nil {
		opts = &WriteOptions{}
	}
	if err := checkNoNUL("outDir", outDir); err != nil {
		return err
	}
	names := make([]string, 0, len(replacements))
	for name := range replacements {
		names = append(names, name)
	}
	cNames, err := cStrings("replacement name", names)
	if err != nil {
		return err
	}
	defer capi.S2ft_go_strings_free(cNames, int64(len(names)))
	cExclude, err := cStrings("excluded file", opts.Exclude)
	if err != nil {
		return err
	}
	defer capi.S2ft_go_strings_free(cExclude, int64(len(opts.Exclude)))
	tensors := capi.S2ft_go_tensors_new(int64(len(names)))
	defer capi.S2ft_go_free(tensors.Swigcptr())
	for i, name := range names {
		t := replacements[name]
		if t == nil || t.desc == nil {
			return &Error{Status: ErrInvalidArgument, Message: fmt.Sprintf("the replacement of %q is nil or closed", name)}
		}
		capi.S2ft_go_tensor_copy(tensors, int64(i), t.desc)
	}
	copyOther := 1
	if opts.SkipOtherFiles {
		copyOther = 0
	}
	var progress uintptr
	if opts.Progress != nil {
		progress = capi.RegisterProgress(opts.Progress)
	}
	err = call(func() int {
		return capi.S2ft_go_checkpoint_write(c.p, outDir, cNames, tensors, int64(len(names)), opts.MaxShardBytes,
			copyOther, cExclude, int64(len(opts.Exclude)), uint64(progress))
	})
	if progress != 0 {
		if p := capi.UnregisterProgress(progress); p != nil {
			panic(p)
		}
	}
	return err
}

// NewModelFromCheckpoint creates a model over a checkpoint's o, v, down and
// up weights, as views into it, in base order with the checkpoint's shape:
// applying an adapter changes the checkpoint's contents in this process
// (copy-on-write, never the files), and Checkpoint.Write then writes the
// merged model. Read the weights through Model.Layer. The context must be a
// CPU context. The model keeps references to ctx and ckpt; close it first.
func NewModelFromCheckpoint(ctx *Context, ckpt *Checkpoint) (*Model, error) {
	return NewPermutedModelFromCheckpoint(ctx, ckpt, nil, nil)
}

// NewPermutedModelFromCheckpoint is NewModelFromCheckpoint with a model
// shape (nil: the checkpoint's) and the selection the stored weights are
// permuted by (nil: base order).
func NewPermutedModelFromCheckpoint(ctx *Context, ckpt *Checkpoint, shape *ModelShape, perm *Selection) (*Model, error) {
	ns := capi.S2ft_model_shape(capi.SwigcptrS2ft_model_shape(0))
	if shape != nil {
		n := shape.native()
		defer capi.DeleteS2ft_model_shape(n)
		ns = n
	}
	cell := capi.New_model_out()
	defer capi.Delete_model_out(cell)
	if err := call(func() int {
		return capi.S2ft_model_from_checkpoint(ctx.p, ckpt.p, ns, selectionPtr(perm), cell)
	}); err != nil {
		return nil, err
	}
	ckpt.models++
	return &Model{p: capi.Model_out_value(cell), ctx: ctx, ckpt: ckpt}, nil
}

// Layer is the weights of a layer as the model holds them: o, v, down and
// up (q, k and gate are nil), including the applied adapter if any. The
// tensors are views owned by the model (Close on them does nothing), valid
// until it is closed.
func (m *Model) Layer(layer int) (LayerWeights, error) {
	if layer >= 0 && layer < len(m.views) && m.views[layer].Down != nil {
		return m.views[layer], nil
	}
	arr := capi.S2ft_go_layers_new(1)
	defer capi.S2ft_go_free(arr.Swigcptr())
	if err := call(func() int { return capi.S2ft_model_layer(m.p, layer, arr) }); err != nil {
		return LayerWeights{}, err
	}
	var w [7]*Tensor
	for f := range w {
		if d := capi.S2ft_go_layer_weight(arr, f); d != nil && d.Swigcptr() != 0 {
			w[f] = viewOf(d, m.ckpt)
		}
	}
	lw := LayerWeights{Q: w[0], K: w[1], V: w[2], O: w[3], Gate: w[4], Up: w[5], Down: w[6]}
	for len(m.views) <= layer {
		m.views = append(m.views, LayerWeights{})
	}
	m.views[layer] = lw
	return lw, nil
}

// ApplyFiles loads the adapter files at paths, fuses them when there are
// several (weights as FuseAdapters: nil means each one's default scale; a
// single file is applied at weights[0], nil or NaN meaning its default
// scale) and applies the result, replacing the applied adapter if any, as
// Switch. The model owns the loaded adapter (Applied returns it). Flags:
// ApplyForce. On error the model is unchanged.
func (m *Model) ApplyFiles(paths []string, weights []float64, flags ...uint32) error {
	if len(paths) == 0 || (weights != nil && len(weights) != len(paths)) {
		return &Error{Status: ErrInvalidArgument, Message: "ApplyFiles: need at least one path and one weight per path"}
	}
	cPaths, err := cStrings("path", paths)
	if err != nil {
		return err
	}
	defer capi.S2ft_go_strings_free(cPaths, int64(len(paths)))
	var w *float64
	if weights != nil {
		w = &weights[0]
	}
	if err := call(func() int {
		return capi.S2ft_go_model_apply_files(m.p, cPaths, w, int64(len(paths)), applyFlags(flags))
	}); err != nil {
		return err
	}
	cell := capi.New_adapter_out()
	defer capi.Delete_adapter_out(cell)
	if err := call(func() int { return capi.S2ft_model_applied(m.p, cell, nil) }); err != nil {
		return err
	}
	m.setApplied(&Adapter{p: capi.Adapter_out_value(cell), borrowed: true})
	return nil
}

// Applied is the applied adapter (nil when none) and its scale. An adapter
// from ApplyFiles is the model's: it is valid until replaced or removed.
func (m *Model) Applied() (*Adapter, float64, error) {
	cell := capi.New_adapter_out()
	defer capi.Delete_adapter_out(cell)
	scale := math.NaN()
	if err := call(func() int { return capi.S2ft_model_applied(m.p, cell, &scale) }); err != nil {
		return nil, math.NaN(), err
	}
	p := capi.Adapter_out_value(cell)
	if p == nil || p.Swigcptr() == 0 || m.applied == nil || m.applied.p == nil || m.applied.p.Swigcptr() != p.Swigcptr() {
		return nil, math.NaN(), nil
	}
	return m.applied, scale, nil
}
