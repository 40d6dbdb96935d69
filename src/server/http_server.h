// HttpServer: the OpenAI-compatible HTTP API over a Scheduler (cpp-httplib for the HTTP,
// nlohmann-json for the JSON).
//
//   POST /v1/chat/completions, /v1/completions   streamed (SSE) or whole
//   GET  /v1/models, /health, /metrics
//   POST /tokenize, /detokenize                  llama-server's shapes
//
// HTTP threads (a pool of max_connections + a few spare ones, which answer 503 beyond the
// limit and keep /health answering under load) parse, check and tokenize a request, hand it
// to the scheduler and then only wait on its RequestStream; the compute thread never
// touches a socket. A stream whose client has gone (a failed write) is cancelled.
//
// The server binds before the model is loaded: until SetBackend, /health answers 503 and
// everything else 503 "loading".
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"
#include "runtime/chat_template.h"
#include "server/metrics.h"
#include "server/request.h"
#include "server/scheduler.h"
#include "tokenizer/tokenizer.h"

namespace httplib {
class Server;
}

namespace tierlm::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port (see HttpServer::port())
  std::string api_key;             // non-empty: every route but /health needs "Authorization: Bearer <key>"
  std::string cors_origin;         // non-empty: CORS headers for this origin ("*" any); empty: no CORS
  size_t max_body_bytes = 4 << 20; // larger bodies: 413
  int max_connections = 64;        // connections served at once; more: 503
  double request_timeout_s = 600;  // a generation running longer is cut off (504)
  RequestLimits limits;
};

// What the routes need once the model is loaded.
struct Backend {
  Scheduler* scheduler = nullptr;
  const tokenizer::Tokenizer* tokenizer = nullptr;
  ChatTemplate chat_template = ChatTemplate::kChatml;
  std::string model_id;  // what /v1/models lists and requests may name
  int64_t n_ctx = 0;
  int64_t created = 0;   // Unix seconds the model was loaded
  // Called before /metrics is written, to refresh what the engine counts (may be empty).
  std::function<void(Metrics*)> refresh_metrics;
};

class HttpServer {
 public:
  explicit HttpServer(HttpOptions options, Metrics* metrics);
  ~HttpServer();

  // Binds host:port; IoError naming the address when it cannot.
  Status Bind();
  int port() const { return port_; }
  // Serves until Stop(); call from one thread after Bind.
  void Serve();
  // Ends Serve (from any thread, before or while it runs) and waits until it has returned.
  void Stop();
  // Waits up to max_seconds for the requests being served to end (after the scheduler has
  // ended their streams, so that their last events reach the clients before Stop).
  void Drain(double max_seconds);
  // The model is ready: requests are served from now on. `backend` must outlive the server.
  void SetBackend(const Backend* backend) { backend_.store(backend); }

 private:
  void Routes();
  Status BindSocket();
  HttpOptions o_;
  Metrics* metrics_;
  std::unique_ptr<httplib::Server> svr_;
  std::atomic<const Backend*> backend_{nullptr};
  std::atomic<int> active_{0};
  std::atomic<bool> serving_{false}, stopped_{false};
  int port_ = 0;
};

}  // namespace tierlm::server
