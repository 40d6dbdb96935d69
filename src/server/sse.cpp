#include "server/sse.h"

namespace tierlm::server {

std::string DumpJson(const nlohmann::json& j) {
  return j.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

std::string SseEvent(const nlohmann::json& payload) { return "data: " + DumpJson(payload) + "\n\n"; }

std::string SseDone() { return "data: [DONE]\n\n"; }

}  // namespace tierlm::server
