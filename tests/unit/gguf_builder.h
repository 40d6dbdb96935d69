// Builds raw GGUF bytes field by field, so tests can write well-formed files and corrupt
// any single field of them.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace tierlm::testing {

class GgufBytes {
 public:
  template <typename T>
  GgufBytes& Pod(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof v);
    return *this;
  }
  GgufBytes& Str(const std::string& s) {
    Pod<uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
    return *this;
  }
  GgufBytes& Header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    return Pod<uint32_t>(0x46554747).Pod<uint32_t>(version).Pod<uint64_t>(n_tensors).Pod<uint64_t>(n_kv);
  }
  GgufBytes& KvU32(const std::string& key, uint32_t v) { return Str(key).Pod<uint32_t>(4).Pod<uint32_t>(v); }
  GgufBytes& KvStr(const std::string& key, const std::string& v) { return Str(key).Pod<uint32_t>(8).Str(v); }
  // A 1-D or 2-D tensor info.
  GgufBytes& Tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    Str(name).Pod<uint32_t>(static_cast<uint32_t>(ne.size()));
    for (auto d : ne) Pod<uint64_t>(d);
    return Pod<uint32_t>(type).Pod<uint64_t>(offset);
  }
  GgufBytes& AlignTo(size_t a) {
    while (bytes.size() % a) bytes.push_back(0);
    return *this;
  }
  GgufBytes& Zeros(size_t n) {
    bytes.insert(bytes.end(), n, 0);
    return *this;
  }
  std::vector<uint8_t> bytes;
};

}  // namespace tierlm::testing
