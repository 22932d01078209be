package org.s2ft;

import org.s2ft.swig.S2ftNativeConstants;

/** The option-struct versions this binding was written against. */
final class S2ftNativeVersions {
  private S2ftNativeVersions() {}

  static final long CONTEXT_OPTIONS = S2ftNativeConstants.S2FT_CONTEXT_OPTIONS_VERSION;
  static final long SELECT_OPTIONS = S2ftNativeConstants.S2FT_SELECT_OPTIONS_VERSION;
  static final long OPTIMIZER_OPTIONS = S2ftNativeConstants.S2FT_OPTIMIZER_OPTIONS_VERSION;
  static final long LIFT_OPTIONS = S2ftNativeConstants.S2FT_LIFT_OPTIONS_VERSION;
  static final long SPIEL_OPTIONS = S2ftNativeConstants.S2FT_SPIEL_OPTIONS_VERSION;
  static final long SPIEL_STATS = S2ftNativeConstants.S2FT_SPIEL_STATS_VERSION;
}
