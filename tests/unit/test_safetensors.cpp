// White-box tests of the safetensors reader and writer: round trips, a
// corpus of hostile files (each must give S2FT_ERR_FORMAT and, under the
// sanitizer build, never read out of bounds), and atomic writes.
#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "io/safetensors.hpp"

namespace {

using s2ft::io::SafetensorsFile;
using s2ft::io::SafetensorsWriter;
using s2ft::io::TensorInfo;

// A file image: 8-byte little-endian header length, header, data.
std::vector<uint8_t> image(const std::string &header, const std::vector<uint8_t> &data, uint64_t header_len) {
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(header_len >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  out.shrink_to_fit();  // capacity == size, so the sanitizer sees any read past the end
  return out;
}
std::vector<uint8_t> image(const std::string &header, const std::vector<uint8_t> &data) {
  return image(header, data, header.size());
}
std::vector<uint8_t> bytes_of(size_t n) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(i * 7 + 3);
  return d;
}

// Parses `img` and returns the error status and message (S2FT_OK, "" when it parses).
std::pair<s2ft_status, std::string> try_parse(std::vector<uint8_t> img) {
  try {
    SafetensorsFile::parse(std::move(img), "corpus.safetensors");
  } catch (const s2ft::Error &e) {
    return {e.status(), e.what()};
  }
  return {S2FT_OK, ""};
}

std::vector<uint8_t> read_all(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<std::string> list_dir(const std::string &dir) {
  std::vector<std::string> names;
  if (DIR *d = opendir(dir.c_str())) {
    while (dirent *e = readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    closedir(d);
  }
  return names;
}

// A fresh empty folder under the test temp directory, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "s2ft_st_XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    EXPECT_NE(mkdtemp(buf.data()), nullptr);
    path_ = buf.data();
  }
  ~TempDir() {
    chmod(path_.c_str(), 0755);
    remove_tree(path_);
  }
  const std::string &path() const { return path_; }
  std::string file(const std::string &name) const { return path_ + "/" + name; }

 private:
  static void remove_tree(const std::string &p) {
    for (const auto &n : list_dir(p)) {
      const std::string c = p + "/" + n;
      struct stat st;
      if (lstat(c.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(c);
      else unlink(c.c_str());
    }
    rmdir(p.c_str());
  }
  std::string path_;
};

SafetensorsWriter sample_writer() {
  SafetensorsWriter w;
  w.set_metadata("format", "test");
  w.set_metadata("note", "h\xc3\xa9llo \"quoted\" \\ back");
  std::vector<float> a(3 * 5);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.25f * static_cast<float>(i) - 1.5f;
  w.add("layer.0.a", "F32", {3, 5}, a.data(), a.size() * 4);
  std::vector<uint8_t> b = bytes_of(7 * 2);
  w.add("b_bf16", "BF16", {7}, b.data(), b.size());
  std::vector<uint8_t> c = bytes_of(2);
  w.add("c", "F16", {1, 1, 1}, c.data(), c.size());
  std::vector<int64_t> d = {1, -2, 3, 1ll << 40, 5, 6};
  w.add("d", "I64", {2, 3}, d.data(), d.size() * 8);
  w.add("empty", "U8", {0, 4}, nullptr, 0);
  std::vector<uint8_t> s = {1};
  w.add("scalar", "BOOL", {}, s.data(), 1);
  std::vector<double> e = {3.5, -1e300, 2.0};
  w.add("e", "F64", {3}, e.data(), e.size() * 8);
  return w;
}

TEST(Safetensors, DtypeSizes) {
  EXPECT_EQ(s2ft::io::safetensors_dtype_size("F32"), 4u);
  EXPECT_EQ(s2ft::io::safetensors_dtype_size("BF16"), 2u);
  EXPECT_EQ(s2ft::io::safetensors_dtype_size("F16"), 2u);
  EXPECT_EQ(s2ft::io::safetensors_dtype_size("F64"), 8u);
  EXPECT_EQ(s2ft::io::safetensors_dtype_size("I64"), 8u);
  EXPECT_EQ(s2ft::io::safetensors_dtype_size("U8"), 1u);
  EXPECT_EQ(s2ft::io::safetensors_dtype_size("BOOL"), 1u);
  EXPECT_EQ(s2ft::io::safetensors_dtype_size("f32"), 0u);
  EXPECT_EQ(s2ft::io::safetensors_dtype_size(""), 0u);
}

TEST(Safetensors, RoundTripInMemory) {
  const SafetensorsWriter w = sample_writer();
  const std::vector<uint8_t> img = w.serialize();
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | img[static_cast<size_t>(i)];
  EXPECT_EQ(n % 8, 0u) << "header must be padded to a multiple of 8";
  ASSERT_LE(8 + n, img.size());
  const std::string header(img.begin() + 8, img.begin() + 8 + static_cast<long>(n));
  EXPECT_EQ(header.front(), '{');
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}')) << "padding must be spaces";

  const SafetensorsFile f = SafetensorsFile::parse(img, "mem");
  EXPECT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata().at("format"), "test");
  EXPECT_EQ(f.metadata().at("note"), "h\xc3\xa9llo \"quoted\" \\ back");

  const std::vector<std::string> names = {"layer.0.a", "b_bf16", "c", "d", "empty", "scalar", "e"};
  ASSERT_EQ(f.tensors().size(), names.size());
  uint64_t offset = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const TensorInfo &t = f.tensors()[i];
    EXPECT_EQ(t.name, names[i]) << "tensors must come back in insertion order";
    EXPECT_EQ(t.begin, offset) << t.name << ": offsets must be contiguous";
    offset = t.end;
    EXPECT_EQ(f.find(t.name), &t);
  }
  EXPECT_EQ(8 + n + offset, img.size());
  EXPECT_EQ(f.find("missing"), nullptr);

  const TensorInfo *a = f.find("layer.0.a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, "F32");
  EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 5}));
  for (int i = 0; i < 15; ++i) {
    float v;
    std::memcpy(&v, f.data(*a) + 4 * i, 4);
    EXPECT_EQ(v, 0.25f * static_cast<float>(i) - 1.5f);
  }
  const TensorInfo *d = f.find("d");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->dtype, "I64");
  int64_t d3;
  std::memcpy(&d3, f.data(*d) + 3 * 8, 8);
  EXPECT_EQ(d3, 1ll << 40);
  const TensorInfo *b = f.find("b_bf16");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->shape, (std::vector<int64_t>{7}));
  EXPECT_EQ(std::vector<uint8_t>(f.data(*b), f.data(*b) + 14), bytes_of(14));
  EXPECT_EQ(f.find("c")->shape, (std::vector<int64_t>{1, 1, 1}));
  EXPECT_EQ(f.find("empty")->shape, (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(f.find("empty")->begin, f.find("empty")->end);
  EXPECT_TRUE(f.find("scalar")->shape.empty());
  EXPECT_EQ(*f.data(*f.find("scalar")), 1);
  double e1;
  std::memcpy(&e1, f.data(*f.find("e")) + 8, 8);
  EXPECT_EQ(e1, -1e300);
}

TEST(Safetensors, RoundTripThroughFile) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  const SafetensorsWriter w = sample_writer();
  w.write(path);
  EXPECT_EQ(read_all(path), w.serialize());
  const SafetensorsFile f = SafetensorsFile::read(path);
  EXPECT_EQ(f.tensors().size(), 7u);
  EXPECT_EQ(f.metadata().at("format"), "test");
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"model.safetensors"}) << "no temporary file may remain";
}

TEST(Safetensors, EmptyFileWithoutMetadata) {
  SafetensorsWriter w;
  const SafetensorsFile f = SafetensorsFile::parse(w.serialize(), "empty");
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_TRUE(f.metadata().empty());
}

TEST(Safetensors, ReadsForeignLayoutWithGapsAndAnyOrder) {
  // Offsets need not follow header order; gaps between tensors are allowed.
  const std::string h =
      R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]},)"
      R"("a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})";
  const SafetensorsFile f = SafetensorsFile::parse(image(h, bytes_of(8)), "foreign");
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[0].name, "b");
  EXPECT_EQ(*f.data(*f.find("b")), bytes_of(8)[6]);
}

TEST(Safetensors, WriterRejectsBadInput) {
  SafetensorsWriter w;
  float x[4] = {1, 2, 3, 4};
  w.add("x", "F32", {2, 2}, x, 16);
  auto status_of = [&](auto f) {
    try {
      f();
    } catch (const s2ft::Error &e) {
      return e.status();
    }
    return S2FT_OK;
  };
  EXPECT_EQ(status_of([&] { w.add("x", "F32", {2, 2}, x, 16); }), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { w.add("y", "F32", {2, 2}, x, 12); }), S2FT_ERR_SHAPE);
  EXPECT_EQ(status_of([&] { w.add("y", "F32", {-1, 2}, x, 16); }), S2FT_ERR_SHAPE);
  EXPECT_EQ(status_of([&] { w.add("y", "Q4", {4}, x, 16); }), S2FT_ERR_DTYPE);
  EXPECT_EQ(status_of([&] { w.add("__metadata__", "F32", {4}, x, 16); }), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(status_of([&] { w.add("", "F32", {4}, x, 16); }), S2FT_ERR_INVALID_ARGUMENT);
  SafetensorsWriter bad_utf8;
  bad_utf8.set_metadata("k", "\xff\xfe");
  EXPECT_EQ(status_of([&] { bad_utf8.serialize(); }), S2FT_ERR_INVALID_ARGUMENT);
}

// One hostile file per defect. `needle` must appear in the message (the
// tensor or field at fault); every message names the file.
struct Broken {
  const char *defect;
  std::vector<uint8_t> img;
  const char *needle;
};

std::vector<Broken> corpus() {
  const std::string ok_entry = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  auto one = [&](const std::string &entry) { return image("{\"w\":" + entry + "}", bytes_of(8)); };
  std::vector<Broken> c;
  c.push_back({"empty file", {}, "8-byte"});
  c.push_back({"5-byte file", {1, 0, 0, 0, 0}, "8-byte"});
  c.push_back({"header length past the end", image("{}", {}, 3), "past the end"});
  c.push_back({"header length past the end by far", image("{}", bytes_of(4), 1000), "past the end"});
  c.push_back({"absurd header length", image("{}", {}, 1ull << 40), "limit"});
  c.push_back({"header length 2^64-1", image("{}", {}, ~0ull), "limit"});
  c.push_back({"zero header length", image("", bytes_of(8)), "empty"});
  c.push_back({"not JSON", image("{\"w\": nope}", bytes_of(8)), "JSON"});
  c.push_back({"truncated JSON", image("{\"w\":{\"dtype\":", {}), "JSON"});
  c.push_back({"trailing garbage", image("{} x", {}), "JSON"});
  c.push_back({"header is an array", image("[1,2]", {}), "object"});
  c.push_back({"header is a string", image("\"{}\"", {}), "object"});
  c.push_back({"invalid UTF-8 in a name", image("{\"w\xff\":" + ok_entry + "}", bytes_of(8)), "UTF-8"});
  c.push_back({"overlong UTF-8", image("{\"w\xc0\xaf\":" + ok_entry + "}", bytes_of(8)), "UTF-8"});
  c.push_back({"lone surrogate escape", image("{\"w\\ud800\":" + ok_entry + "}", bytes_of(8)), "JSON"});
  c.push_back({"NUL byte in the header", image(std::string("{\"w\":\0}", 7), {}), "JSON"});
  c.push_back({"tensor entry is a number", one("5"), "\"w\""});
  c.push_back({"tensor entry is an array", one("[1]"), "\"w\""});
  c.push_back({"missing dtype", one(R"({"shape":[2],"data_offsets":[0,8]})"), "dtype"});
  c.push_back({"dtype not a string", one(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})"), "dtype"});
  c.push_back({"unknown dtype", one(R"({"dtype":"F33","shape":[2],"data_offsets":[0,8]})"), "F33"});
  c.push_back({"missing shape", one(R"({"dtype":"F32","data_offsets":[0,8]})"), "shape"});
  c.push_back({"shape not an array", one(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"), "shape"});
  c.push_back({"negative extent", one(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), "shape[0]"});
  c.push_back({"fractional extent", one(R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,8]})"), "shape[0]"});
  c.push_back({"string extent", one(R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})"), "shape[0]"});
  c.push_back({"extent above int64",
               one(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]})"), "shape[0]"});
  c.push_back({"product overflows 64 bits",
               one(R"({"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]})"), "elements"});
  c.push_back({"huge product with tiny bytes",
               one(R"({"dtype":"F64","shape":[2305843009213693952,8],"data_offsets":[0,8]})"), "elements"});
  c.push_back({"missing data_offsets", one(R"({"dtype":"F32","shape":[2]})"), "data_offsets"});
  c.push_back({"data_offsets one number", one(R"({"dtype":"F32","shape":[2],"data_offsets":[8]})"), "data_offsets"});
  c.push_back({"data_offsets three numbers", one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,9]})"),
               "data_offsets"});
  c.push_back({"data_offsets not numbers", one(R"({"dtype":"F32","shape":[2],"data_offsets":["0","8"]})"),
               "data_offsets"});
  c.push_back({"negative data_offsets", one(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"),
               "data_offsets"});
  c.push_back({"begin after end", one(R"({"dtype":"F32","shape":[0],"data_offsets":[8,0]})"), "begin after end"});
  c.push_back({"end past the data buffer", one(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})"),
               "past the data buffer"});
  c.push_back({"offsets near 2^64", one(R"({"dtype":"U8","shape":[8],"data_offsets":[18446744073709551600,18446744073709551608]})"),
               "data_offsets"});
  c.push_back({"byte count below shape", one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"), "need 8"});
  c.push_back({"byte count above shape", one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,8]})"), "need 4"});
  c.push_back({"overlapping tensors",
               image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                     bytes_of(8)),
               "overlap"});
  c.push_back({"identical ranges",
               image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                     R"("b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                     bytes_of(8)),
               "overlap"});
  c.push_back({"duplicate tensor names",
               image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                     R"("a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                     bytes_of(8)),
               "more than once"});
  c.push_back({"duplicate field inside an entry",
               one(R"({"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]})"),
               "\"dtype\" in \"w\" more than once"});
  c.push_back({"duplicate metadata key", image(R"({"__metadata__":{"k":"1","k":"2"}})", {}), "more than once"});
  c.push_back({"empty tensor name", image("{\"\":" + ok_entry + "}", bytes_of(8)), "empty name"});
  c.push_back({"metadata not an object", image(R"({"__metadata__":["a"]})", {}), "__metadata__"});
  c.push_back({"metadata value a number", image(R"({"__metadata__":{"step":3}})", {}), "\"step\""});
  c.push_back({"metadata value an object", image(R"({"__metadata__":{"k":{"x":"y"}}})", {}), "\"k\""});
  c.push_back({"deep nesting", image(std::string(5000, '[') + std::string(5000, ']'), {}), "nesting is deeper"});
  return c;
}

TEST(Safetensors, HostileCorpusGivesFormatErrors) {
  const std::vector<Broken> c = corpus();
  ASSERT_GE(c.size(), 12u);
  for (const Broken &b : c) {
    const auto r = try_parse(b.img);
    EXPECT_EQ(r.first, S2FT_ERR_FORMAT) << b.defect << ": " << r.second;
    EXPECT_NE(r.second.find("corpus.safetensors"), std::string::npos) << b.defect << ": " << r.second;
    EXPECT_NE(r.second.find(b.needle), std::string::npos)
        << b.defect << ": expected '" << b.needle << "' in: " << r.second;
    for (char ch : r.second)
      EXPECT_TRUE(ch >= 0x20 && ch <= 0x7e) << b.defect << ": the message must be printable ASCII: " << r.second;
  }
}

TEST(Safetensors, EveryTruncationIsAFormatError) {
  const std::vector<uint8_t> full = sample_writer().serialize();
  ASSERT_EQ(try_parse(full).first, S2FT_OK);
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(n));
    cut.shrink_to_fit();
    const auto r = try_parse(std::move(cut));
    EXPECT_EQ(r.first, S2FT_ERR_FORMAT) << "truncated to " << n << " of " << full.size() << " bytes: " << r.second;
  }
}

TEST(Safetensors, CorruptedBytesNeverCrash) {
  // Flip every header byte in turn: the result must parse or fail cleanly.
  const std::vector<uint8_t> full = sample_writer().serialize();
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | full[static_cast<size_t>(i)];
  for (size_t pos = 0; pos < 8 + n; ++pos) {
    std::vector<uint8_t> bad = full;
    bad[pos] ^= 0x5a;
    const auto r = try_parse(std::move(bad));
    EXPECT_TRUE(r.first == S2FT_OK || r.first == S2FT_ERR_FORMAT) << "byte " << pos << ": " << r.second;
  }
}

TEST(Safetensors, ReadMissingFileIsIoError) {
  TempDir dir;
  try {
    SafetensorsFile::read(dir.file("absent.safetensors"));
    FAIL() << "expected an error";
  } catch (const s2ft::Error &e) {
    EXPECT_EQ(e.status(), S2FT_ERR_IO);
    EXPECT_NE(std::string(e.what()).find("absent.safetensors"), std::string::npos) << e.what();
  }
  try {
    SafetensorsFile::read(dir.path());
    FAIL() << "expected an error";
  } catch (const s2ft::Error &e) {
    EXPECT_EQ(e.status(), S2FT_ERR_IO) << e.what();
  }
}

TEST(Safetensors, ReadTruncatedFileIsFormatError) {
  TempDir dir;
  const std::string path = dir.file("cut.safetensors");
  const std::vector<uint8_t> full = sample_writer().serialize();
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char *>(full.data()), static_cast<std::streamsize>(full.size() - 3));
  }
  try {
    SafetensorsFile::read(path);
    FAIL() << "expected an error";
  } catch (const s2ft::Error &e) {
    EXPECT_EQ(e.status(), S2FT_ERR_FORMAT);
    EXPECT_NE(std::string(e.what()).find("cut.safetensors"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, WriteReplacesAnExistingFile) {
  TempDir dir;
  const std::string path = dir.file("a.safetensors");
  { std::ofstream(path) << "old contents"; }
  const SafetensorsWriter w = sample_writer();
  w.write(path);
  EXPECT_EQ(read_all(path), w.serialize());
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"a.safetensors"});
}

TEST(Safetensors, WriteOntoADirectoryFailsAndLeavesNothing) {
  TempDir dir;
  const std::string target = dir.file("target");
  ASSERT_EQ(mkdir(target.c_str(), 0755), 0);
  try {
    sample_writer().write(target);
    FAIL() << "expected an error";
  } catch (const s2ft::Error &e) {
    EXPECT_EQ(e.status(), S2FT_ERR_IO);
    EXPECT_NE(std::string(e.what()).find("target"), std::string::npos) << e.what();
  }
  struct stat st;
  ASSERT_EQ(stat(target.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode)) << "the directory must not be replaced";
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"target"}) << "no temporary file may remain";
}

TEST(Safetensors, WriteIntoAMissingFolderFails) {
  TempDir dir;
  try {
    sample_writer().write(dir.file("no/such/folder/x.safetensors"));
    FAIL() << "expected an error";
  } catch (const s2ft::Error &e) {
    EXPECT_EQ(e.status(), S2FT_ERR_IO) << e.what();
  }
  EXPECT_TRUE(list_dir(dir.path()).empty());
}

// Writes `w` to `path`; returns 1 for the expected S2FT_ERR_IO, 0 otherwise.
int write_expecting_io_error(const SafetensorsWriter &w, const std::string &path) {
  try {
    w.write(path);
  } catch (const s2ft::Error &e) {
    return e.status() == S2FT_ERR_IO ? 1 : 0;
  }
  return 0;
}

TEST(Safetensors, WriteIntoAnUnwritableFolderKeepsTheOldFile) {
  TempDir dir;
  const std::string path = dir.file("keep.safetensors");
  { std::ofstream(path) << "old contents"; }
  ASSERT_EQ(chmod(dir.path().c_str(), 0555), 0);
  const SafetensorsWriter w = sample_writer();
  if (geteuid() != 0) {
    EXPECT_EQ(write_expecting_io_error(w, path), 1);
  } else {
    // Root ignores permission bits: try the write from a child process that
    // has dropped to an unprivileged user (nobody).
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
      _exit(write_expecting_io_error(w, path) == 1 ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 2) GTEST_SKIP() << "cannot drop privileges to test folder permissions";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "the write must fail with S2FT_ERR_IO";
  }
  const std::vector<uint8_t> old = read_all(path);
  EXPECT_EQ(std::string(old.begin(), old.end()), "old contents");
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"keep.safetensors"}) << "no temporary file may remain";
}

}  // namespace
