package org.s2ft;

import java.nio.charset.StandardCharsets;

/**
 * Options of {@link Adapter#exportPeft} (s2ft_peft_export_options): by default the adapter's
 * default scale and no base model name.
 */
public final class PeftExportOptions {
  // Read by the JNI layer by name.
  byte[] baseModelNameOrPath;
  double scale = Double.NaN;

  /** {@code base_model_name_or_path} in adapter_config.json (null: written as null). */
  public PeftExportOptions baseModelNameOrPath(String name) {
    baseModelNameOrPath = name == null ? null : name.getBytes(StandardCharsets.UTF_8);
    return this;
  }

  /** The scale folded into the LoRA factors (NaN, the default: the adapter's default scale). */
  public PeftExportOptions scale(double scale) {
    this.scale = scale;
    return this;
  }
}
