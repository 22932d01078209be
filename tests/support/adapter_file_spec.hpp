// An adapter file as editable parts (metadata and tensors in order), for
// tests that damage valid files field by field.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <s2ft/s2ft.h>

#include "io/safetensors.hpp"

namespace s2ft_test {

struct Tensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

struct Spec {
  std::map<std::string, std::string> meta;
  std::vector<Tensor> tensors;

  Tensor &find(const std::string &name) {
    for (auto &t : tensors)
      if (t.name == name) return t;
    ADD_FAILURE() << "no tensor " << name;
    return tensors[0];
  }
  void erase(const std::string &name) {
    for (size_t i = 0; i < tensors.size(); ++i)
      if (tensors[i].name == name) {
        tensors.erase(tensors.begin() + static_cast<long>(i));
        return;
      }
    ADD_FAILURE() << "no tensor " << name;
  }
  std::vector<uint8_t> serialize() const {
    s2ft::io::SafetensorsWriter w;
    for (const auto &kv : meta) w.set_metadata(kv.first, kv.second);
    for (const auto &t : tensors) w.add(t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
    return w.serialize();
  }
};

// Saves `a` through the library at `path`, reads the file back as parts and
// removes it.
inline Spec saved_spec(const s2ft_adapter *a, const std::string &path) {
  EXPECT_EQ(s2ft_adapter_save(a, path.c_str()), S2FT_OK) << s2ft_last_error();
  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(path);
  std::remove(path.c_str());
  Spec s;
  s.meta = f.metadata();
  for (const auto &t : f.tensors()) {
    const uint8_t *p = f.data(t);
    s.tensors.push_back(Tensor{t.name, t.dtype, t.shape, std::vector<uint8_t>(p, p + (t.end - t.begin))});
  }
  return s;
}

}  // namespace s2ft_test
