// Writing a checkpoint: its tensors' current bytes (or their replacements)
// into a new folder, each file atomically. Keeping the layout copies every
// header byte for byte and streams each file's data in file order, so bytes
// that were not replaced are unchanged. Resharding lays the tensors out
// again in the source's order, cutting a new shard whenever the next
// tensor would take its data past the limit.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "checkpoint/checkpoint.hpp"
#include "common/error.hpp"
#include "io/atomic_file.hpp"
#include "io/strict_json.hpp"

namespace fs = std::filesystem;

namespace s2ft {
namespace checkpoint {
namespace {

std::string join(const std::string &dir, const std::string &name) { return (fs::path(dir) / name).string(); }

// The bytes written for an entry: its replacement, or its current bytes.
struct Source {
  const uint8_t *data;
  uint64_t size;
};

// What each tensor's bytes are, and the caller's progress report as they
// are written.
class Contents {
 public:
  Contents(const s2ft_checkpoint &c, const std::vector<Replacement> &replacements, const WriteOptions &o)
      : c_(c), options_(o) {
    for (const Replacement &r : replacements) replaced_[r.entry] = &r.bytes;
    for (size_t e = 0; e < c.entries.size(); ++e) total_ += c.info(e).end - c.info(e).begin;
  }
  Source of(size_t entry) const {
    auto it = replaced_.find(entry);
    if (it != replaced_.end()) return {it->second->data(), it->second->size()};
    const io::TensorInfo &t = c_.info(entry);
    return {c_.bytes(entry), t.end - t.begin};
  }
  // Writes an entry's bytes through `put` and reports the progress.
  void put_entry(size_t entry, const io::PutBytes &put) const {
    const Source src = of(entry);
    put(src.data, static_cast<size_t>(src.size));
    done_ += src.size;
    if (options_.progress != nullptr) options_.progress(options_.progress_user, done_, total_);
  }

 private:
  const s2ft_checkpoint &c_;
  const WriteOptions &options_;
  std::map<size_t, const std::vector<uint8_t> *> replaced_;
  uint64_t total_ = 0;
  mutable uint64_t done_ = 0;
};

// One shard in its own layout: the header as it is in the file, then its
// data buffer with each tensor's current or new bytes; bytes of the buffer
// that belong to no tensor are copied as they are.
void write_shard_as_is(const s2ft_checkpoint &c, size_t shard, const Contents &contents, const std::string &path) {
  const Shard &s = c.shards[shard];
  std::vector<size_t> order;  // this shard's entries by data offset
  for (size_t e = 0; e < c.entries.size(); ++e)
    if (c.entries[e].shard == shard) order.push_back(e);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return c.info(a).begin < c.info(b).begin; });
  const uint8_t *image = s.image();
  io::write_file_atomic_streamed(path, [&](const io::PutBytes &put) {
    put(image, static_cast<size_t>(s.header.data_start));
    uint64_t at = 0;  // in the data buffer
    for (size_t e : order) {
      const io::TensorInfo &t = c.info(e);
      if (t.begin > at) put(image + s.header.data_start + at, static_cast<size_t>(t.begin - at));
      contents.put_entry(e, put);
      at = std::max(at, t.end);
    }
    const uint64_t data_size = s.header.file_size - s.header.data_start;
    if (data_size > at) put(image + s.header.data_start + at, static_cast<size_t>(data_size - at));
  });
}

// A new shard holding entries [first, last) of the source's order.
void write_new_shard(const s2ft_checkpoint &c, size_t first, size_t last, const Contents &contents,
                     const std::map<std::string, std::string> &metadata, const std::string &path) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto &kv : metadata) m[kv.first] = kv.second;
    header["__metadata__"] = std::move(m);
  }
  uint64_t offset = 0;
  for (size_t e = first; e < last; ++e) {
    const io::TensorInfo &t = c.info(e);
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = t.dtype;
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + (t.end - t.begin)};
    offset += t.end - t.begin;
    header[t.name] = std::move(entry);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data buffer starts 8-aligned
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  io::write_file_atomic_streamed(path, [&](const io::PutBytes &put) {
    put(length, 8);
    put(text.data(), text.size());
    for (size_t e = first; e < last; ++e) contents.put_entry(e, put);
  });
}

std::string shard_name(size_t i, size_t n) {
  char name[64];
  std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return name;
}

// The index's "metadata" object of the source (total_size replaced), or
// just total_size.
nlohmann::ordered_json index_metadata(const s2ft_checkpoint &c, uint64_t total_size) {
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  if (c.sharded) {
    const nlohmann::ordered_json index = io::parse_strict_json(
        c.index_text.data(), c.index_text.data() + c.index_text.size(), 64,
        [&](const std::string &why) { fail(S2FT_ERR_FORMAT, std::string(kIndexFile) + ": " + why); });
    auto m = index.find("metadata");
    if (m != index.end() && m->is_object()) meta = *m;
  }
  meta["total_size"] = total_size;
  return meta;
}

// The files written, by name.
std::set<std::string> write_resharded(const s2ft_checkpoint &c, const std::string &out_dir, const Contents &contents,
                                      uint64_t max_shard_bytes) {
  std::vector<std::pair<size_t, size_t>> cuts;  // [first, last) per shard
  uint64_t in_shard = 0, total = 0;
  for (size_t e = 0; e < c.entries.size(); ++e) {
    const io::TensorInfo &t = c.info(e);
    const uint64_t n = t.end - t.begin;
    if (cuts.empty() || (in_shard > 0 && n > max_shard_bytes - std::min(max_shard_bytes, in_shard))) {
      cuts.push_back({e, e});
      in_shard = 0;
    }
    cuts.back().second = e + 1;
    in_shard += n;
    total += n;
  }
  const std::map<std::string, std::string> metadata =
      c.shards.empty() ? std::map<std::string, std::string>() : c.shards.front().header.metadata;
  std::set<std::string> written;
  if (cuts.size() <= 1) {
    write_new_shard(c, 0, c.entries.size(), contents, metadata, join(out_dir, kSingleFile));
    written.insert(kSingleFile);
    return written;
  }
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  for (size_t i = 0; i < cuts.size(); ++i) {
    const std::string file = shard_name(i, cuts.size());
    write_new_shard(c, cuts[i].first, cuts[i].second, contents, metadata, join(out_dir, file));
    for (size_t e = cuts[i].first; e < cuts[i].second; ++e) weight_map[c.info(e).name] = file;
    written.insert(file);
  }
  nlohmann::ordered_json index = nlohmann::ordered_json::object();
  index["metadata"] = index_metadata(c, total);
  index["weight_map"] = std::move(weight_map);
  const std::string text = index.dump(2) + "\n";
  io::write_file_atomic(join(out_dir, kIndexFile), text.data(), text.size());
  written.insert(kIndexFile);
  return written;
}

void make_folder(const std::string &out_dir, const s2ft_checkpoint &c) {
  struct stat st;
  if (::stat(out_dir.c_str(), &st) != 0) {
    std::error_code ec;
    fs::create_directory(out_dir, ec);
    if (ec) fail(S2FT_ERR_IO, "cannot create the folder " + out_dir + ": " + ec.message());
  } else if (!S_ISDIR(st.st_mode)) {
    fail(S2FT_ERR_IO, "cannot write into " + out_dir + ": it is not a folder");
  }
  std::error_code ec;
  if (fs::equivalent(out_dir, c.dir, ec))
    fail_arg("out_dir " + out_dir + " is the checkpoint's own folder: write the copy elsewhere");
}

// Every regular file of the source folder the checkpoint does not consist
// of (tokenizer, generation config, ...), unless excluded or written.
void copy_other_files(const s2ft_checkpoint &c, const std::string &out_dir, const std::set<std::string> &skip) {
  std::set<std::string> own = {kConfigFile, kIndexFile};
  for (const Shard &s : c.shards) own.insert(s.file);
  try {
    for (const fs::directory_entry &e : fs::directory_iterator(c.dir)) {
      const std::string name = e.path().filename().string();
      if (!e.is_regular_file() || own.count(name) != 0 || skip.count(name) != 0) continue;
      if (name.find(".tmp.") != std::string::npos) continue;  // someone's half-written file
      io::copy_file_atomic(e.path().string(), join(out_dir, name));  // refused if it became a FIFO
    }
  } catch (const fs::filesystem_error &e) {
    fail(S2FT_ERR_IO, "cannot list " + c.dir + ": " + e.code().message());
  }
}

// "1.5 GiB", for messages.
std::string bytes_text(uint64_t bytes) {
  const char *const kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024.0 && unit < 6) v /= 1024.0, ++unit;
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", v, kUnits[unit]);
  return text;
}

// Refuses, before writing, a copy the output filesystem has no room for
// (a file past the free space would fail anyway, after minutes of writing).
void require_room(const s2ft_checkpoint &c, const std::string &out_dir) {
  uint64_t needed = 0;
  for (const Shard &s : c.shards) needed += s.header.file_size;
  struct statvfs vfs;
  if (::statvfs(out_dir.c_str(), &vfs) != 0) return;  // unknown: the writes will say
  const uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * static_cast<uint64_t>(vfs.f_frsize);
  if (needed > free_bytes)
    fail(S2FT_ERR_IO, "writing the checkpoint into " + out_dir + " needs " + bytes_text(needed) +
                          " of disk space, more than the " + bytes_text(free_bytes) + " free there");
}

}  // namespace

void write(const s2ft_checkpoint &c, const std::string &out_dir, const std::vector<Replacement> &replacements,
           const WriteOptions &options) {
  make_folder(out_dir, c);
  require_room(c, out_dir);
  const Contents contents(c, replacements, options);
  std::set<std::string> written;
  if (options.max_shard_bytes == 0) {
    for (size_t s = 0; s < c.shards.size(); ++s) {
      write_shard_as_is(c, s, contents, join(out_dir, c.shards[s].file));
      written.insert(c.shards[s].file);
    }
    if (c.sharded) {
      io::write_file_atomic(join(out_dir, kIndexFile), c.index_text.data(), c.index_text.size());
      written.insert(kIndexFile);
    }
  } else {
    written = write_resharded(c, out_dir, contents, options.max_shard_bytes);
  }
  if (c.has_config) io::write_file_atomic(join(out_dir, kConfigFile), c.config_text.data(), c.config_text.size());
  if (c.single_file || !options.copy_other_files) return;
  std::set<std::string> skip(options.exclude.begin(), options.exclude.end());
  skip.insert(written.begin(), written.end());
  copy_other_files(c, out_dir, skip);
}

}  // namespace checkpoint
}  // namespace s2ft
