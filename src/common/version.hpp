// The library version as text ("0.1.0"), from the public header's macros,
// for s2ft_version_string() and for the backend modules' ModuleInfo.
#pragma once

#include "s2ft/s2ft.h"

#define S2FT_VERSION_STR2_(x) #x
#define S2FT_VERSION_STR_(x) S2FT_VERSION_STR2_(x)
#define S2FT_VERSION_TEXT                                                          \
  S2FT_VERSION_STR_(S2FT_VERSION_MAJOR) "." S2FT_VERSION_STR_(S2FT_VERSION_MINOR) \
  "." S2FT_VERSION_STR_(S2FT_VERSION_PATCH)
