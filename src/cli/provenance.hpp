// The provenance the tool records in the adapters it writes (adapter
// metadata, docs/adapter-format.md): the library's version, the time the
// adapter was made, values derived from the inputs, and the user's own
// --meta KEY=VALUE pairs.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "s2ft/s2ft.h"

namespace s2ft {
namespace cli {

using MetaPairs = std::vector<std::pair<std::string, std::string>>;

// The time an output is made, as UTC ISO-8601 ("2024-05-01T12:00:00Z"):
// SOURCE_DATE_EPOCH (whole seconds since 1970, at most 253402300799) when
// it is set and not empty, so that a run can be reproduced byte for byte;
// otherwise now. A malformed SOURCE_DATE_EPOCH is an error, so commands
// call this before any work.
std::string created_time();

// Why the library would refuse `key` = `value` as metadata ("" when it would
// not), in its words without the function name: "key is empty".
std::string meta_problem(const std::string &key, const std::string &value);

// The pairs of repeated `option` KEY=VALUE texts, each checked against the
// library's rules at once (before a command does any work); a malformed
// text, a refused key or value, or a key given twice is an error naming the
// option.
MetaPairs parse_meta_options(const std::string &option, const std::vector<std::string> &texts);

// Sets `key` to `value`; an error carries the library's message.
void set_meta(s2ft_adapter *adapter, const std::string &key, const std::string &value);

// Sets `key` to `value`, a value the tool derived from its inputs (a name in
// a config.json); one the library refuses is left out with a warning from
// `command` instead of failing the command.
void set_derived_meta(s2ft_adapter *adapter, const std::string &command, const std::string &key,
                      const std::string &value);

// Records library_version (s2ft_version_string()) and created (the
// command's created_time()).
void record_tool_provenance(s2ft_adapter *adapter, const std::string &created);

}  // namespace cli
}  // namespace s2ft
