#include "server/http_server.h"

#include <httplib.h>
#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <random>
#include <thread>

#include "server/response_json.h"
#include "server/sse.h"

namespace tierlm::server {
namespace {

// The socket of a handler's own connection. cpp-httplib 0.11 does not hand it to handlers,
// so it is found among the process's sockets by its peer's address and port (one open
// connection per client address and port; it stays open while its handler runs). -1 if
// not found.
int ConnectionSocket(const httplib::Request& req) {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (*end || fd < 0 || fd == dirfd(dir)) continue;
    struct stat st;
    if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage peer{};
    socklen_t pl = sizeof(peer);
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (getnameinfo(reinterpret_cast<sockaddr*>(&peer), pl, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
      continue;
    if (req.remote_addr == host && std::to_string(req.remote_port) == port) {
      found = static_cast<int>(fd);
      break;
    }
  }
  closedir(dir);
  return found;
}

// Whether the peer of a connection we are not reading from has closed it.
bool PeerClosed(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}


using nlohmann::json;

// httplib's thread pool, counting the connections being served (the limit's measure).
class CountingQueue : public httplib::TaskQueue {
 public:
  CountingQueue(size_t n, std::atomic<int>* active) : pool_(n), active_(active) {}
  void enqueue(std::function<void()> fn) override {
    pool_.enqueue([this, fn = std::move(fn)] {
      active_->fetch_add(1);
      fn();
      active_->fetch_sub(1);
    });
  }
  void shutdown() override { pool_.shutdown(); }

 private:
  httplib::ThreadPool pool_;
  std::atomic<int>* active_;
};

// Threads beyond the connection limit: they answer 503 (and /health) while the rest are busy.
constexpr int kSpareThreads = 4;

void SendError(httplib::Response& res, int status, const std::string& message, const std::string& type,
               const std::string& param = "", const std::string& code = "") {
  res.status = status;
  res.set_content(DumpJson(ErrorJson(message, type, param, code)), "application/json");
}

void SendError(httplib::Response& res, const RequestError& e) {
  SendError(res, e.http_status, e.message, e.type, e.param, e.code);
}

const char* TypeForStatus(int status) {
  switch (status) {
    case 401:
      return "authentication_error";
    case 404:
      return "not_found_error";
    case 503:
      return "unavailable_error";
    case 504:
      return "timeout_error";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

void SendJson(httplib::Response& res, const json& j) { res.set_content(DumpJson(j), "application/json"); }

// The state a streamed answer keeps between calls of its content provider.
struct SseState {
  std::shared_ptr<RequestStream> stream;
  ResponseHeader header;
  bool chat = true;
  bool include_usage = false;
  bool logprobs = false;
  int32_t n = 1;
  bool started = false;
  std::vector<int64_t> text_offset;  // completions logprobs: bytes sent so far per choice
  const tokenizer::Tokenizer* tok = nullptr;
};

// Writes the events that arrived (waiting a little for some); false when the client is gone.
bool PumpSse(SseState& st, httplib::DataSink& sink) {
  auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
  if (!st.started) {
    st.started = true;
    if (st.chat) {
      const std::string role = "assistant", empty;
      for (int32_t i = 0; i < st.n; ++i)
        if (!write(SseEvent(ChatChunkJson(st.header, i, &role, &empty, FinishReason::kNone, nullptr,
                                          st.include_usage))))
          return false;
    }
    return true;
  }
  std::vector<StreamEvent> events;
  if (!st.stream->Wait(&events, std::chrono::milliseconds(200))) return true;
  for (StreamEvent& e : events) {
    std::string out;
    switch (e.kind) {
      case StreamEvent::Kind::kDelta: {
        if (e.text.empty() && !(st.logprobs && !e.logprobs.empty())) continue;
        json lp = nullptr;
        if (st.chat) {
          if (st.logprobs) lp = ChatLogprobsJson(e.logprobs, *st.tok);
          out = SseEvent(ChatChunkJson(st.header, e.choice, nullptr, &e.text, FinishReason::kNone, lp, st.include_usage));
        } else {
          int64_t& off = st.text_offset[static_cast<size_t>(e.choice)];
          if (st.logprobs) lp = CompletionLogprobsJson(e.logprobs, *st.tok, off);
          off += static_cast<int64_t>(e.text.size());
          out = SseEvent(CompletionChunkJson(st.header, e.choice, e.text, FinishReason::kNone, lp, st.include_usage));
        }
        break;
      }
      case StreamEvent::Kind::kFinish:
        out = st.chat ? SseEvent(ChatChunkJson(st.header, e.choice, nullptr, nullptr, e.finish, nullptr, st.include_usage))
                      : SseEvent(CompletionChunkJson(st.header, e.choice, "", e.finish, nullptr, st.include_usage));
        break;
      case StreamEvent::Kind::kDone:
        if (st.include_usage)
          out = SseEvent(UsageChunkJson(st.header, st.chat, {e.prompt_tokens, e.completion_tokens, e.cached_tokens}));
        out += SseDone();
        if (!write(out)) return false;
        sink.done();
        return true;
      case StreamEvent::Kind::kError:
        if (!write(SseEvent(ErrorJson(e.error, TypeForStatus(e.http_status), "", std::to_string(e.http_status)))))
          return false;
        sink.done();
        return true;
    }
    if (!write(out)) return false;
  }
  return true;
}

Result<json> ParseJsonObject(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument("the request body is not valid JSON");
  if (!j.is_object()) return Status::InvalidArgument("the request body must be a JSON object");
  return j;
}

}  // namespace

HttpServer::HttpServer(HttpOptions options, Metrics* metrics)
    : o_(std::move(options)), metrics_(metrics), svr_(std::make_unique<httplib::Server>()) {
  Routes();
}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Bind() {
  // httplib listens with a backlog of 5: a burst of clients would overflow the kernel's
  // accept queue. Its socket-options hook hands over the listening socket, whose backlog
  // is raised once it listens.
  int listen_fd = -1;
  svr_->set_socket_options([&listen_fd](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_fd = sock;
  });
  Status st = BindSocket();
  if (st.ok() && listen_fd >= 0) ::listen(listen_fd, 1024);
  return st;
}

Status HttpServer::BindSocket() {
  if (o_.port == 0) {
    port_ = svr_->bind_to_any_port(o_.host);
    if (port_ <= 0) return Status::IoError("serve: cannot bind " + o_.host + " (any port)");
  } else {
    if (!svr_->bind_to_port(o_.host, o_.port))
      return Status::IoError("serve: cannot bind " + o_.host + ":" + std::to_string(o_.port) +
                             " (in use, or not an address of this machine)");
    port_ = o_.port;
  }
  return Status::Ok();
}

void HttpServer::Serve() {
  // serving_ is raised before stopped_ is looked at, and Stop does the reverse, so a Stop
  // that comes before, during or after the start of listening always ends it.
  serving_.store(true);
  if (!stopped_.load()) svr_->listen_after_bind();
  serving_.store(false);
}

void HttpServer::Stop() {
  stopped_.store(true);
  while (serving_.load()) {
    svr_->stop();  // a no-op until the listening loop runs: retried until it has ended
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void HttpServer::Drain(double max_seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(max_seconds);
  while (active_.load() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
}

void HttpServer::Routes() {
  httplib::Server& s = *svr_;
  const size_t threads = static_cast<size_t>(std::max(1, o_.max_connections) + kSpareThreads);
  s.new_task_queue = [this, threads] { return new CountingQueue(threads, &active_); };
  s.set_payload_max_length(o_.max_body_bytes);
  s.set_tcp_nodelay(true);
  s.set_keep_alive_timeout(5);
  s.set_read_timeout(30);
  s.set_write_timeout(30);

  s.set_logger([this](const httplib::Request&, const httplib::Response& res) {
    if (metrics_) metrics_->CountHttp(res.status);
  });

  // Every error answer is OpenAI-shaped, also those httplib makes itself (404, 413, 400).
  s.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    switch (res.status) {
      case 404:
        SendError(res, 404, "no route " + req.method + " " + req.path, "not_found_error", "", "not_found");
        break;
      case 413:
        SendError(res, 413, "the request body is too large", "invalid_request_error", "", "request_too_large");
        break;
      case 405:
        SendError(res, 405, "method " + req.method + " is not allowed on " + req.path, "invalid_request_error");
        break;
      default:
        SendError(res, res.status, "the request could not be handled", TypeForStatus(res.status));
        break;
    }
    return httplib::Server::HandlerResponse::Handled;
  }));
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    SendError(res, 500, "internal error: " + what, "server_error");
  });

  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    using HR = httplib::Server::HandlerResponse;
    if (!o_.cors_origin.empty()) {
      res.set_header("Access-Control-Allow-Origin", o_.cors_origin);
      res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      if (req.method == "OPTIONS") {
        res.status = 204;
        return HR::Handled;
      }
    }
    return HR::Unhandled;
  });

  // The checks every route but /health makes, inside the handler: after httplib has read the
  // body, so that closing the connection never discards unread bytes (a TCP reset that
  // would destroy the answer before the client reads it).
  auto gated = [this](httplib::Server::Handler handler) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      if (active_.load() > o_.max_connections) {
        res.set_header("Connection", "close");
        return SendError(res, 503,
                         "too many connections (at most " + std::to_string(o_.max_connections) + "); try again later",
                         "unavailable_error", "", "too_many_connections");
      }
      if (!o_.api_key.empty() && req.get_header_value("Authorization") != "Bearer " + o_.api_key)
        return SendError(res, 401, "invalid or missing API key: send 'Authorization: Bearer <key>'",
                         "authentication_error", "", "invalid_api_key");
      if (!backend_.load() && req.path != "/metrics")
        return SendError(res, 503, "the model is loading", "unavailable_error", "", "loading");
      handler(req, res);
    };
  };

  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (!backend_.load()) return SendError(res, 503, "the model is loading", "unavailable_error", "", "loading");
    SendJson(res, {{"status", "ok"}});
  });

  s.Get("/metrics", gated([this](const httplib::Request&, httplib::Response& res) {
    if (const Backend* b = backend_.load()) {
      metrics_->SetGauges(b->scheduler->Snapshot());
      if (b->refresh_metrics) b->refresh_metrics(metrics_);
    }
    res.set_content(metrics_->Text(), "text/plain; version=0.0.4");
  }));

  s.Get("/v1/models", gated([this](const httplib::Request&, httplib::Response& res) {
    const Backend* b = backend_.load();
    json m = {{"id", b->model_id}, {"object", "model"}, {"created", b->created}, {"owned_by", "tierlm"}};
    SendJson(res, {{"object", "list"}, {"data", json::array({m})}});
  }));

  s.Get(R"(/v1/models/(.+))", gated([this](const httplib::Request& req, httplib::Response& res) {
    const Backend* b = backend_.load();
    const std::string id = req.matches[1];
    if (id != b->model_id)
      return SendError(res, 404, "the model '" + id + "' does not exist (this server serves '" + b->model_id + "')",
                       "invalid_request_error", "model", "model_not_found");
    SendJson(res, {{"id", b->model_id}, {"object", "model"}, {"created", b->created}, {"owned_by", "tierlm"}});
  }));

  s.Post("/tokenize", gated([this](const httplib::Request& req, httplib::Response& res) {
    const Backend* b = backend_.load();
    auto j = ParseJsonObject(req.body);
    if (!j.ok()) return SendError(res, 400, j.status().message(), "invalid_request_error");
    auto it = j->find("content");
    if (it == j->end() || !it->is_string())
      return SendError(res, 400, "'content' must be a string", "invalid_request_error", "content");
    bool add_special = false, with_pieces = false;
    if (auto a = j->find("add_special"); a != j->end()) {
      if (!a->is_boolean()) return SendError(res, 400, "'add_special' must be a boolean", "invalid_request_error", "add_special");
      add_special = a->get<bool>();
    }
    if (auto a = j->find("with_pieces"); a != j->end()) {
      if (!a->is_boolean()) return SendError(res, 400, "'with_pieces' must be a boolean", "invalid_request_error", "with_pieces");
      with_pieces = a->get<bool>();
    }
    const std::vector<int32_t> ids = b->tokenizer->Encode(it->get<std::string>(), add_special, /*parse_special=*/true);
    json tokens = json::array();
    for (int32_t id : ids) {
      if (with_pieces) tokens.push_back({{"id", id}, {"piece", b->tokenizer->TokenToPiece(id)}});
      else tokens.push_back(id);
    }
    SendJson(res, {{"tokens", tokens}});
  }));

  s.Post("/detokenize", gated([this](const httplib::Request& req, httplib::Response& res) {
    const Backend* b = backend_.load();
    auto j = ParseJsonObject(req.body);
    if (!j.ok()) return SendError(res, 400, j.status().message(), "invalid_request_error");
    auto it = j->find("tokens");
    if (it == j->end() || !it->is_array())
      return SendError(res, 400, "'tokens' must be an array of token ids", "invalid_request_error", "tokens");
    std::vector<int32_t> ids;
    for (const json& t : *it) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= b->tokenizer->n_tokens())
        return SendError(res, 400, "'tokens' holds " + t.dump() + ": not a token id of this model (0.." +
                                       std::to_string(b->tokenizer->n_tokens() - 1) + ")",
                         "invalid_request_error", "tokens");
      ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    SendJson(res, {{"content", b->tokenizer->Decode(ids)}});
  }));

  auto completion = [this](RequestKind kind) {
    return [this, kind](const httplib::Request& req, httplib::Response& res) {
      const Backend* b = backend_.load();
      const bool chat = kind == RequestKind::kChat;
      ParseResult pr = ParseCompletionRequest(req.body, kind, o_.limits);
      if (!pr.ok()) return SendError(res, pr.error);
      CompletionRequest& r = *pr.request;
      if (!r.model.empty() && r.model != b->model_id)
        return SendError(res, 404, "the model '" + r.model + "' does not exist (this server serves '" + b->model_id + "')",
                         "invalid_request_error", "model", "model_not_found");
      GenerationJob job;
      if (chat) {
        job.prompt = b->tokenizer->Encode(FormatChat(b->chat_template, r.messages, /*add_assistant_prefix=*/true),
                                          /*add_special=*/true, /*parse_special=*/true);
      } else if (r.prompt_is_tokens) {
        job.prompt = r.prompt_tokens;
        job.cache_salt = r.cache_salt;
      } else {
        job.prompt = b->tokenizer->Encode(r.prompt, /*add_special=*/true, /*parse_special=*/true);
      }
      if (static_cast<int64_t>(job.prompt.size()) > b->n_ctx)
        return SendError(res, 400,
                         "the prompt has " + std::to_string(job.prompt.size()) + " tokens but the context holds " +
                             std::to_string(b->n_ctx) + " per request (-c / -np; all of -c with --kv-unified)",
                         "invalid_request_error", chat ? "messages" : "prompt", "context_length_exceeded");
      job.n = r.n;
      job.max_tokens = r.max_tokens.value_or(-1);
      job.stop = r.stop;
      job.top_logprobs = r.logprobs ? r.top_logprobs : -1;
      SamplerParams& sp = job.sampling;
      sp.temperature = r.temperature;
      sp.top_k = r.top_k;
      sp.top_p = r.top_p;
      sp.min_p = r.min_p;
      sp.repeat_penalty = r.repeat_penalty;
      sp.presence_penalty = r.presence_penalty;
      sp.frequency_penalty = r.frequency_penalty;
      sp.repeat_last_n = static_cast<int32_t>(std::min<int64_t>(b->n_ctx, 1 << 30));  // penalties see the whole context
      sp.logit_bias = r.logit_bias;
      sp.seed = r.seed ? *r.seed : std::random_device{}();
      job.deadline = std::chrono::steady_clock::now() +
                     std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                         std::chrono::duration<double>(o_.request_timeout_s));
      auto stream = b->scheduler->Submit(std::move(job));
      if (!stream.ok()) {
        const Status& st = stream.status();
        if (st.code() == StatusCode::kResourceExhausted)
          return SendError(res, 503, st.message(), "unavailable_error", "", "overloaded");
        return SendError(res, 400, st.message(), "invalid_request_error", "",
                         st.code() == StatusCode::kOutOfRange ? "context_length_exceeded" : "");
      }
      ResponseHeader h{NewRequestId(chat ? "chatcmpl-" : "cmpl-"), static_cast<int64_t>(std::time(nullptr)),
                       b->model_id};

      if (r.stream) {
        auto st = std::make_shared<SseState>();
        st->stream = *stream;
        st->header = h;
        st->chat = chat;
        st->include_usage = r.include_usage;
        st->logprobs = r.logprobs;
        st->n = r.n;
        st->text_offset.assign(static_cast<size_t>(r.n), 0);
        st->tok = b->tokenizer;
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider(
            "text/event-stream",
            [st](size_t, httplib::DataSink& sink) {
              if (PumpSse(*st, sink)) return true;
              st->stream->Cancel();  // the client is gone: free its blocks at the next step
              return false;
            },
            [st](bool success) {
              if (!success) st->stream->Cancel();
            });
        return;
      }

      std::vector<ChoiceResult> choices(static_cast<size_t>(r.n));
      // A client that leaves while its whole answer is computed is seen on its socket (the
      // answer is only written at the end): its request is cancelled, its blocks freed.
      const int sock = ConnectionSocket(req);
      while (true) {
        std::vector<StreamEvent> events;
        (*stream)->Wait(&events, std::chrono::milliseconds(100));
        if (PeerClosed(sock)) {
          (*stream)->Cancel();
          res.status = 499;  // never delivered: nobody is listening
          return;
        }
        for (StreamEvent& e : events) {
          switch (e.kind) {
            case StreamEvent::Kind::kDelta: {
              ChoiceResult& c = choices[static_cast<size_t>(e.choice)];
              c.text += e.text;
              for (auto& lp : e.logprobs) c.logprobs.push_back(std::move(lp));
              break;
            }
            case StreamEvent::Kind::kFinish:
              choices[static_cast<size_t>(e.choice)].finish = e.finish;
              break;
            case StreamEvent::Kind::kDone:
            {
              const Usage u{e.prompt_tokens, e.completion_tokens, e.cached_tokens};
              return SendJson(res, chat ? ChatResponseJson(h, choices, r.logprobs, u, *b->tokenizer)
                                        : CompletionResponseJson(h, choices, r.logprobs, u, *b->tokenizer));
            }
            case StreamEvent::Kind::kError:
              return SendError(res, e.http_status, e.error, TypeForStatus(e.http_status));
          }
        }
      }
    };
  };
  s.Post("/v1/chat/completions", gated(completion(RequestKind::kChat)));
  s.Post("/v1/completions", gated(completion(RequestKind::kCompletion)));
  // llama-server's unversioned aliases.
  s.Post("/chat/completions", gated(completion(RequestKind::kChat)));
  s.Post("/completions", gated(completion(RequestKind::kCompletion)));
}

}  // namespace tierlm::server
