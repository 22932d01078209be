/*
 * The language-neutral SWIG description of the libs2ft C API.
 *
 * Per-language interfaces (bindings/java/s2ft_java.i, bindings/go/s2ft_go.i)
 * set their module name, define their typemaps (status codes turned into
 * exceptions or error values, out-handles, tensors from language arrays) and
 * then %include this file. Nothing here is specific to one language.
 */

%{
#include "s2ft/s2ft.h"
%}

%include <stdint.i>

/* The export macro means nothing to SWIG. */
#define S2FT_API

/* Handles are opaque: SWIG sees only pointers to incomplete structs. */
typedef struct s2ft_context s2ft_context;
typedef struct s2ft_statistics s2ft_statistics;
typedef struct s2ft_selection s2ft_selection;
typedef struct s2ft_optimizer s2ft_optimizer;
typedef struct s2ft_adapter s2ft_adapter;
typedef struct s2ft_model s2ft_model;
typedef struct s2ft_sparse_delta s2ft_sparse_delta;
typedef struct s2ft_sparse_set s2ft_sparse_set;
typedef struct s2ft_spiel s2ft_spiel;

/* An array-of-pointers parameter no target language maps naturally; the
 * bindings build selections with s2ft_select or load them from files. */
%ignore s2ft_selection_create;

%include "s2ft/s2ft.h"
