// libFuzzer target: the safetensors reader must reject or accept any bytes
// without reading out of bounds; when it accepts, every tensor it reports
// lies inside the buffer.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/error.hpp"
#include "io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  try {
    const auto f = s2ft::io::SafetensorsFile::parse(std::vector<uint8_t>(data, data + size), "fuzz");
    volatile uint8_t sink = 0;
    for (const auto &t : f.tensors()) {
      const uint8_t *p = f.data(t);
      for (uint64_t i = t.begin; i < t.end; ++i) sink = static_cast<uint8_t>(sink ^ p[i - t.begin]);
    }
    (void)sink;
  } catch (const s2ft::Error &) {
  }
  return 0;
}
