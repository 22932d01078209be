package s2ft

import (
	"math"

	"s2ft.dev/s2ft/internal/capi"
)

// SetMeta sets the metadata key (1 to 255 bytes of [A-Za-z0-9._-]) to value
// (UTF-8, at most 65536 bytes). Metadata is saved with the adapter; at most
// 256 keys. On error nothing changes.
func (a *Adapter) SetMeta(key, value string) error {
	if err := checkNoNUL("metadata key", key); err != nil {
		return err
	}
	if err := checkNoNUL("metadata value", value); err != nil {
		return err
	}
	return call(func() int { return capi.S2ft_adapter_set_meta(a.p, key, value) })
}

// RemoveMeta removes the metadata key (an absent key is not an error).
func (a *Adapter) RemoveMeta(key string) error {
	if err := checkNoNUL("metadata key", key); err != nil {
		return err
	}
	return call(func() int { return capi.S2ft_go_adapter_remove_meta(a.p, key) })
}

// Meta is the value of the metadata key; ok is false when the adapter has none.
func (a *Adapter) Meta(key string) (value string, ok bool) {
	if checkNoNUL("metadata key", key) != nil {
		return "", false
	}
	var status, present int64
	value = capi.S2ft_go_adapter_meta(a.p, key, &status, &present)
	return value, status == OK && present != 0
}

// Metadata is all the adapter's metadata.
func (a *Adapter) Metadata() (map[string]string, error) {
	var n int64
	if err := call(func() int { return capi.S2ft_adapter_meta_count(a.p, &n) }); err != nil {
		return nil, err
	}
	out := make(map[string]string, n)
	for i := int64(0); i < n; i++ {
		var kv [2]string
		for which := range kv {
			if err := call(func() int {
				var status int64
				kv[which] = capi.S2ft_go_adapter_meta_at(a.p, i, which, &status)
				return int(status)
			}); err != nil {
				return nil, err
			}
		}
		out[kv[0]] = kv[1]
	}
	return out, nil
}

// PEFTExportOptions configures Adapter.ExportPEFT; the zero value (or nil)
// is the library's default.
type PEFTExportOptions struct {
	// BaseModelNameOrPath is written to adapter_config.json ("" as null).
	BaseModelNameOrPath string
	// Scale is folded into the LoRA factors; 0 (or NaN) means the adapter's
	// default scale.
	Scale float64
}

// ExportPEFT writes the adapter as a Hugging Face PEFT LoRA adapter into the
// folder outDir (made when missing; its parent must exist):
// adapter_config.json and adapter_model.safetensors. Each entry with k lines
// becomes a LoRA module of rank k whose B A is exactly scale * delta on its
// lines (one factor one-hot).
func (a *Adapter) ExportPEFT(outDir string, opts *PEFTExportOptions) error {
	if opts == nil {
		opts = &PEFTExportOptions{}
	}
	if err := checkNoNUL("outDir", outDir); err != nil {
		return err
	}
	if err := checkNoNUL("BaseModelNameOrPath", opts.BaseModelNameOrPath); err != nil {
		return err
	}
	scale := opts.Scale
	if scale == 0 {
		scale = math.NaN()
	}
	return call(func() int { return capi.S2ft_go_adapter_export_peft(a.p, outDir, opts.BaseModelNameOrPath, scale) })
}
