// Telling the tool's inputs apart before reading them: a checkpoint folder,
// an adapter, a selection, an optimizer state, a model's weights, other
// safetensors or JSON. Giving a file of one kind where another is expected
// then fails with "X is a selection file, not an adapter" instead of a
// parser's complaint about header lengths or JSON nesting. Only the first
// bytes, the safetensors header or the (small) JSON text are read.
#pragma once

#include <string>

namespace s2ft {
namespace cli {

enum class FileKind {
  kMissing,
  kCheckpoint,         // a folder with config.json
  kFolder,             // any other folder
  kAdapter,            // safetensors, __metadata__ format s2ft-adapter
  kOptimizerState,     // safetensors, __metadata__ format s2ft-optimizer
  kModelWeights,       // safetensors with a model's tensors (model.safetensors or a shard)
  kSafetensors,        // any other valid safetensors file
  kBadSafetensors,     // named or shaped like safetensors, but its header is malformed
  kSelection,          // JSON, "format": "s2ft-selection"
  kConfig,             // a checkpoint's config.json
  kShardIndex,         // a checkpoint's model.safetensors.index.json
  kJson,               // any other JSON
  kBadJson,            // named or shaped like JSON, but not valid JSON
  kOther,              // neither safetensors nor JSON
};

FileKind file_kind(const std::string &path);

// "an adapter", "a selection file", ... for messages.
const char *kind_phrase(FileKind kind);

// Throws CliError "PATH is <its kind>, not <expected>" unless PATH is of the
// expected kind. A damaged file of the expected format passes, so that its
// loader reports exactly what is wrong with it.
void require_kind(const std::string &path, FileKind expected);

}  // namespace cli
}  // namespace s2ft
