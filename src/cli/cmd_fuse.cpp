// s2ft fuse ADAPTER[:SCALE]... -o OUT.safetensors: one adapter equal to
// applying the inputs one after another with their scales.

#include "adapter_args.hpp"
#include "args.hpp"
#include "commands.hpp"
#include "output.hpp"
#include "printable.hpp"
#include "provenance.hpp"

namespace s2ft {
namespace cli {

const char *const kFuseHelp =
    "usage: s2ft fuse ADAPTER[:SCALE]... -o OUT.safetensors [--name NAME]\n"
    "\n"
    "Fuses adapters into one: per weight the union of their lines, with the deltas added,\n"
    "each times its SCALE (default: the adapter's default scale). The result's default scale\n"
    "is 1 and its name joins the inputs' names with '+' unless --name is given.\n"
    "\n"
    "The result keeps each input's provenance: its metadata under input.<i>. (i from 0, in\n"
    "the order given), with input.<i>.name and input.<i>.weight (the scale used); it records\n"
    "library_version and created (UTC; from SOURCE_DATE_EPOCH when set).\n"
    "\n"
    "  -o, --output PATH          the adapter file to write\n"
    "  --name NAME                the fused adapter's name (at most 255 bytes)\n";

int run_fuse(const Words &words) {
  const ParsedArgs args = parse_args(words, {"--output", "--name"}, {});
  if (args.positional.empty()) die("expected at least one adapter (see --help)");
  if (!args.has("--output")) die("-o OUT.safetensors is required");
  const std::string out = args.get("--output");
  const std::string created = created_time();
  std::vector<std::string> inputs;
  for (const std::string &t : args.positional) inputs.push_back(parse_adapter_arg(t).path);
  check_output_file(out, inputs);

  LoadedAdapters loaded = load_adapters(args.positional);
  AdapterPtr fused = fuse_adapters(loaded);
  if (args.has("--name")) set_adapter_name(fused.get(), args.get("--name"));
  record_tool_provenance(fused.get(), created);
  check(s2ft_adapter_save(fused.get(), out.c_str()));
  say("wrote adapter " + out + " (\"" + s2ft_adapter_name(fused.get()) + "\", fused from " +
      std::to_string(loaded.adapters.size()) + ")");
  return 0;
}

}  // namespace cli
}  // namespace s2ft
