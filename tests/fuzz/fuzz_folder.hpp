// A folder of files as one fuzz input, for the checkpoint fuzzer and the
// seed generator. The input is a sequence of files, each introduced by a
// marker line:
//
//   "\xff\x01file:" NAME "\n" CONTENT
//
// CONTENT runs to the next marker or to the end of the input; bytes before
// the first marker are ignored. A marker, not a length prefix, separates the
// files so that libFuzzer's byte-level mutations change one file's content
// without shifting the others. The marker starts with 0xff, which no UTF-8
// text (config.json, the index) contains, and the seeds' tensor data avoids
// it, so the seeds split back exactly into the files they were made from.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace s2ft_fuzz {

constexpr char kFileMarker[] = "\xff\x01" "file:";
constexpr size_t kFileMarkerSize = sizeof kFileMarker - 1;

struct FolderFile {
  std::string name;
  std::string content;
};

inline std::string encode_folder(const std::vector<FolderFile> &files) {
  std::string out;
  for (const FolderFile &f : files) out += std::string(kFileMarker, kFileMarkerSize) + f.name + "\n" + f.content;
  return out;
}

inline std::vector<FolderFile> decode_folder(const uint8_t *data, size_t size) {
  const char *p = reinterpret_cast<const char *>(data);
  const std::string text(p, size);
  std::vector<FolderFile> files;
  size_t at = text.find(kFileMarker, 0, kFileMarkerSize);
  while (at != std::string::npos) {
    const size_t begin = at + kFileMarkerSize;
    const size_t next = text.find(kFileMarker, begin, kFileMarkerSize);
    const size_t end = next == std::string::npos ? text.size() : next;
    const size_t newline = text.find('\n', begin);
    FolderFile f;
    if (newline == std::string::npos || newline >= end) {
      f.name = text.substr(begin, end - begin);
    } else {
      f.name = text.substr(begin, newline - begin);
      f.content = text.substr(newline + 1, end - newline - 1);
    }
    files.push_back(std::move(f));
    at = next;
  }
  return files;
}

}  // namespace s2ft_fuzz
