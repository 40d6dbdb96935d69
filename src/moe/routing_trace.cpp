#include "moe/routing_trace.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace tierlm {

RoutingTrace::RoutingTrace(int32_t n_layer, int32_t n_expert, int32_t n_used)
    : n_layer_(n_layer), n_expert_(n_expert), n_used_(n_used), recorded_(static_cast<size_t>(n_layer), 0) {}

int64_t RoutingTrace::n_tokens() const {
  if (recorded_.empty()) return 0;
  return *std::min_element(recorded_.begin(), recorded_.end());
}

Status RoutingTrace::Record(int32_t layer, int64_t n, const int32_t* experts, const float* weights) {
  if (layer < 0 || layer >= n_layer_)
    return Status::InvalidArgument("routing trace: layer " + std::to_string(layer) + " is outside [0, " +
                                   std::to_string(n_layer_) + ")");
  for (int64_t i = 0; i < n * n_used_; ++i)
    if (experts[i] < 0 || experts[i] >= n_expert_)
      return Status::InvalidArgument("routing trace: expert " + std::to_string(experts[i]) + " at layer " +
                                     std::to_string(layer) + " is outside [0, " + std::to_string(n_expert_) + ")");
  std::vector<int32_t> sorted(static_cast<size_t>(n_used_));
  for (int64_t t = 0; t < n; ++t) {
    std::copy(experts + t * n_used_, experts + (t + 1) * n_used_, sorted.begin());
    std::sort(sorted.begin(), sorted.end());
    const auto twice = std::adjacent_find(sorted.begin(), sorted.end());
    if (twice != sorted.end())
      return Status::InvalidArgument("routing trace: expert " + std::to_string(*twice) +
                                     " is chosen twice for one token at layer " + std::to_string(layer));
  }
  int64_t& first = recorded_[static_cast<size_t>(layer)];
  const size_t need = static_cast<size_t>((first + n) * n_layer_ * n_used_);
  if (experts_.size() < need) {
    experts_.resize(std::max(need, experts_.size() * 2), -1);
    weights_.resize(experts_.size(), 0.0f);
  }
  for (int64_t t = 0; t < n; ++t)
    for (int32_t k = 0; k < n_used_; ++k) {
      experts_[Index(first + t, layer, k)] = experts[t * n_used_ + k];
      weights_[Index(first + t, layer, k)] = weights[t * n_used_ + k];
    }
  first += n;
  return Status::Ok();
}

Status RoutingTrace::AppendToken(const int32_t* experts, const float* weights) {
  const int64_t t = n_tokens();
  for (int32_t l = 0; l < n_layer_; ++l)
    if (recorded_[static_cast<size_t>(l)] != t)
      return Status::InvalidArgument("routing trace: AppendToken on a trace with a partly recorded token");
  for (int32_t l = 0; l < n_layer_; ++l)
    TIERLM_RETURN_IF_ERROR(Record(l, 1, experts + l * n_used_, weights + l * n_used_));
  return Status::Ok();
}

Status RoutingTrace::BeginSequence() {
  const int64_t t = n_tokens();
  for (int64_t r : recorded_)
    if (r != t) return Status::InvalidArgument("routing trace: BeginSequence while a token is partly recorded");
  if (starts_.back() != t) starts_.push_back(t);
  return Status::Ok();
}

std::vector<int64_t> RoutingTrace::sequence_starts() const {
  const int64_t n = n_tokens();
  std::vector<int64_t> out;
  for (int64_t s : starts_)
    if (s < n || s == 0) out.push_back(s);
  return out;
}

std::vector<std::pair<int64_t, int64_t>> RoutingTrace::sequences() const {
  const int64_t n = n_tokens();
  std::vector<std::pair<int64_t, int64_t>> out;
  for (size_t i = 0; i < starts_.size(); ++i) {
    const int64_t b = starts_[i], e = std::min(n, i + 1 < starts_.size() ? starts_[i + 1] : n);
    if (b < e) out.push_back({b, e});
  }
  return out;
}

Status RoutingTrace::Save(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return Status::IoError(tmp + ": cannot open for writing");
    const int64_t n = n_tokens();
    const std::vector<int64_t> starts = sequence_starts();
    out << "tierlm-routing-trace 2 " << n_layer_ << ' ' << n_expert_ << ' ' << n_used_ << ' ' << n << ' '
        << starts.size() << '\n';
    out << "sequences";
    for (int64_t s : starts) out << ' ' << s;
    out << '\n';
    char buf[32];
    for (int64_t t = 0; t < n; ++t) {
      for (int32_t l = 0; l < n_layer_; ++l)
        for (int32_t k = 0; k < n_used_; ++k) {
          std::snprintf(buf, sizeof(buf), "%.6g", static_cast<double>(weight(t, l, k)));
          out << (l || k ? " " : "") << expert(t, l, k) << ' ' << buf;
        }
      out << '\n';
    }
    if (!out.flush()) return Status::IoError(tmp + ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::IoError(path + ": cannot rename " + tmp + ": " + ec.message());
  return Status::Ok();
}

Result<RoutingTrace> RoutingTrace::Load(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return Status::IoError(path + ": cannot open the routing trace");
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) return Status::IoError(path + ": read failed");
  return Parse(text.str(), path);
}

Result<RoutingTrace> RoutingTrace::Parse(const std::string& text, const std::string& path) {
  std::istringstream in(text);
  std::string line, magic;
  int version = 0;
  int64_t n_layer = 0, n_expert = 0, n_used = 0, n_tokens = -1;
  if (!std::getline(in, line)) return Status::Corruption(path + ": empty file, expected a routing trace header");
  std::istringstream header(line);
  header >> magic >> version;
  if (!header || magic != "tierlm-routing-trace")
    return Status::Corruption(path + ": line 1: not a tierlm routing trace header");
  if (version != 1 && version != 2)
    return Status::Unsupported(path + ": routing trace version " + std::to_string(version) +
                               " (this tierlm reads versions 1 and 2)");
  int64_t n_sequences = 1;
  header >> n_layer >> n_expert >> n_used >> n_tokens;
  if (version >= 2) header >> n_sequences;
  std::string extra_header;
  if (!header || header >> extra_header)
    return Status::Corruption(path + ": line 1: expected " + (version >= 2 ? "6" : "5") +
                              " numbers after the magic word");
  if (n_layer <= 0 || n_layer > 65536 || n_expert <= 0 || n_expert > 65536 || n_used <= 0 || n_used > n_expert ||
      n_tokens < 0 || n_layer * n_used > kMaxChoicesPerToken)
    return Status::Corruption(path + ": line 1: bad shape (layers " + std::to_string(n_layer) + ", experts " +
                              std::to_string(n_expert) + ", used " + std::to_string(n_used) + ", tokens " +
                              std::to_string(n_tokens) + ")");
  if (n_sequences < 1 || n_sequences > std::max<int64_t>(1, n_tokens))
    return Status::Corruption(path + ": line 1: bad sequence count " + std::to_string(n_sequences) + " for " +
                              std::to_string(n_tokens) + " tokens");
  std::vector<int64_t> starts = {0};
  int64_t line_no = 1;
  if (version >= 2) {
    ++line_no;
    const std::string where = path + ": line 2";
    if (!std::getline(in, line)) return Status::Corruption(where + ": missing the 'sequences' line");
    std::istringstream row(line);
    std::string word;
    starts.clear();
    row >> word;
    if (word != "sequences") return Status::Corruption(where + ": expected 'sequences', found '" + word + "'");
    for (int64_t i = 0; i < n_sequences; ++i) {
      int64_t s = -1;
      if (!(row >> s)) return Status::Corruption(where + ": expected " + std::to_string(n_sequences) + " sequence starts");
      const bool ok = i == 0 ? s == 0 : (s > starts.back() && s < n_tokens);
      if (!ok)
        return Status::Corruption(where + ": sequence start " + std::to_string(s) +
                                  (i == 0 ? " (the first must be 0)" : " is not increasing or not below the token count"));
      starts.push_back(s);
    }
    std::string extra;
    if (row >> extra) return Status::Corruption(where + ": unexpected '" + extra + "' after the last start");
  }
  RoutingTrace trace(static_cast<int32_t>(n_layer), static_cast<int32_t>(n_expert), static_cast<int32_t>(n_used));
  size_t next_start = 1;
  const size_t per_token = static_cast<size_t>(n_layer * n_used);
  std::vector<int32_t> experts(per_token);
  std::vector<float> weights(per_token);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const std::string where = path + ": line " + std::to_string(t + line_no + 1);
    if (next_start < starts.size() && starts[next_start] == t) {
      TIERLM_RETURN_IF_ERROR(trace.BeginSequence());
      ++next_start;
    }
    if (!std::getline(in, line)) return Status::Corruption(where + ": missing (the header says " +
                                                           std::to_string(n_tokens) + " tokens)");
    std::istringstream row(line);
    for (size_t i = 0; i < per_token; ++i)
      if (!(row >> experts[i] >> weights[i])) return Status::Corruption(where + ": expected " +
                                                                        std::to_string(per_token) + " expert/weight pairs");
    std::string extra;
    if (row >> extra) return Status::Corruption(where + ": unexpected '" + extra + "' after the last pair");
    Status st = trace.AppendToken(experts.data(), weights.data());
    if (!st.ok()) return Status::Corruption(where + ": " + st.message());
  }
  return trace;
}

}  // namespace tierlm
