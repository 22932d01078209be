// What the tool prints, made safe to print. Tensor names, metadata, adapter
// names and paths come from the files and the command line, and may hold
// newlines (a forged second line of output, or a second "error:" line) or
// terminal escape sequences (ESC, CSI) that would drive the user's terminal.
// Every line the tool writes goes through printable(), so such bytes are
// shown as escapes instead.
#pragma once

#include <cstdio>
#include <string>

namespace s2ft {
namespace cli {

// `text` with every control character (C0, DEL, and the C1 range U+0080 to
// U+009F) and every byte that is not part of valid UTF-8 replaced by an
// escape: \n, \r, \t, or \xNN for each byte. Other text, including valid
// non-ASCII UTF-8, is unchanged.
std::string printable(const std::string &text);

// Writes printable(line) and a newline to stdout: the one way the commands
// print their results.
void say(const std::string &line);

// Writes printable(line) and a newline to `to` (stderr for errors and warnings).
void say_to(std::FILE *to, const std::string &line);

}  // namespace cli
}  // namespace s2ft
