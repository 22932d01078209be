// Runs another program (the `s2ft` command-line tool) with an argument
// vector, no shell in between, and returns its exit status.
#pragma once

#include <string>
#include <vector>

namespace ft {

// argv[0] is the program: a path, or a name looked up on PATH. Returns the
// exit status, or throws when it cannot be started or is killed.
int run_tool(const std::vector<std::string> &argv);

}  // namespace ft
