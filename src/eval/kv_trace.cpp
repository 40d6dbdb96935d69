#include "eval/kv_trace.h"

#include <cstring>
#include <fstream>

#include "core/little_endian.h"

namespace tierlm::eval {
namespace {

constexpr char kMagic[8] = {'T', 'L', 'K', 'V', 'T', 'R', 'C', '1'};

void PutF32(std::vector<uint8_t>& out, float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  uint8_t b[4];
  PutLe32(b, u);
  out.insert(out.end(), b, b + 4);
}
void Put32(std::vector<uint8_t>& out, uint32_t x) {
  uint8_t b[4];
  PutLe32(b, x);
  out.insert(out.end(), b, b + 4);
}
void Put64(std::vector<uint8_t>& out, uint64_t x) {
  uint8_t b[8];
  PutLe64(b, x);
  out.insert(out.end(), b, b + 8);
}

}  // namespace

std::vector<uint8_t> KvTrace::Serialize() const {
  std::vector<uint8_t> out(kMagic, kMagic + 8);
  Put32(out, static_cast<uint32_t>(n_layer));
  Put32(out, static_cast<uint32_t>(n_head_kv));
  Put32(out, static_cast<uint32_t>(block_size));
  Put32(out, static_cast<uint32_t>(records.size()));
  for (const KvTraceRecord& r : records) {
    Put64(out, static_cast<uint64_t>(r.pos));
    Put32(out, static_cast<uint32_t>(r.layer));
    Put32(out, static_cast<uint32_t>(r.head));
    Put32(out, static_cast<uint32_t>(r.share.size()));
    for (float x : r.share) PutF32(out, x);
    for (float x : r.quest) PutF32(out, x);
  }
  return out;
}

Status KvTrace::Save(const std::string& path) const {
  const std::vector<uint8_t> out = Serialize();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return Status::IoError("kv trace: cannot create '" + path + "'");
  f.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size()));
  f.close();
  if (!f) return Status::IoError("kv trace: writing '" + path + "' failed (disk full?)");
  return Status::Ok();
}

Result<KvTrace> KvTrace::Parse(std::span<const uint8_t> bytes, const std::string& name) {
  size_t at = 0;
  auto need = [&](size_t n, const char* what) -> Status {
    if (bytes.size() - at < n)
      return Status::Corruption(name + ": truncated at byte " + std::to_string(at) + " (" + what + ")");
    return Status::Ok();
  };
  auto u32 = [&] {
    const uint32_t v = GetLe32(bytes.data() + at);
    at += 4;
    return v;
  };
  TIERLM_RETURN_IF_ERROR(need(24, "header"));
  if (std::memcmp(bytes.data(), kMagic, 8) != 0) return Status::Corruption(name + ": not a tierlm KV trace");
  at = 8;
  KvTrace t;
  t.n_layer = static_cast<int32_t>(u32());
  t.n_head_kv = static_cast<int32_t>(u32());
  t.block_size = static_cast<int32_t>(u32());
  const uint32_t n = u32();
  if (t.n_layer <= 0 || t.n_layer > 4096 || t.n_head_kv <= 0 || t.n_head_kv > 4096 || t.block_size <= 0 ||
      t.block_size > 1 << 20)
    return Status::Corruption(name + ": implausible header (layers " + std::to_string(t.n_layer) + ", KV heads " +
                              std::to_string(t.n_head_kv) + ", block " + std::to_string(t.block_size) + ")");
  for (uint32_t i = 0; i < n; ++i) {
    TIERLM_RETURN_IF_ERROR(need(20, "record header"));
    KvTraceRecord r;
    r.pos = static_cast<int64_t>(GetLe64(bytes.data() + at));
    at += 8;
    r.layer = static_cast<int32_t>(u32());
    r.head = static_cast<int32_t>(u32());
    const uint32_t nb = u32();
    if (r.layer < 0 || r.layer >= t.n_layer || r.head < 0 || r.head >= t.n_head_kv || nb == 0 || r.pos < 0)
      return Status::Corruption(name + ": record " + std::to_string(i) + " has layer " + std::to_string(r.layer) +
                                ", head " + std::to_string(r.head) + ", " + std::to_string(nb) + " blocks");
    TIERLM_RETURN_IF_ERROR(need(static_cast<size_t>(nb) * 8, "record data"));
    r.share.resize(nb);
    r.quest.resize(nb);
    for (auto* v : {&r.share, &r.quest})
      for (uint32_t b = 0; b < nb; ++b) {
        const uint32_t u = u32();
        std::memcpy(&(*v)[b], &u, 4);
      }
    t.records.push_back(std::move(r));
  }
  if (at != bytes.size()) return Status::Corruption(name + ": " + std::to_string(bytes.size() - at) + " bytes after the last record");
  return t;
}

Result<KvTrace> KvTrace::Load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::NotFound("kv trace: cannot open '" + path + "'");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return Parse(bytes, path);
}

}  // namespace tierlm::eval
