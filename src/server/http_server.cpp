// Routes, authentication, error mapping and streaming for the OpenAI-compatible server on cpp-httplib.
// Each generation request: parse -> prepare (tokens, limits) -> queue -> poll the running request,
// writing SSE chunks (stream) or one JSON body, while watching for the client going away.
#include "server/http_server.h"

#include <httplib.h>
#include <sys/socket.h>
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <ctime>

#include "server/api_error.h"
#include "server/chat_page.h"
#include "server/connection_probe.h"
#include "server/generation_feed.h"
#include "server/http_connection.h"
#include "server/messages_route.h"
#include "server/openai_response.h"

namespace k2 {
namespace {

using ojson = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const ojson& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

// The one place where failures become HTTP statuses: the request's fault -> 4xx, a full queue -> 503
// with Retry-After, anything else -> 500. The server keeps serving after every one of them.
void send_error(httplib::Response& res, std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const ApiError& e) {
    const char* type = e.status() == 401 ? "authentication_error" : e.status() == 404 ? "not_found_error" : "invalid_request_error";
    send_json(res, e.status(), error_json(e.what(), type, e.param(), e.code()));
  } catch (const BusyError& e) {
    res.set_header("Retry-After", "1");
    send_json(res, 503, error_json(e.what(), "server_error", "", "server_busy"));
  } catch (const InputError& e) {
    send_json(res, 400, error_json(e.what(), "invalid_request_error", "", ""));
  } catch (const std::invalid_argument& e) {
    send_json(res, 400, error_json(e.what(), "invalid_request_error", "", ""));
  } catch (const std::exception& e) {
    send_json(res, 500, error_json(fmt::format("internal error: {}", e.what()), "server_error", "", "internal_error"));
  } catch (...) {
    send_json(res, 500, error_json("internal error", "server_error", "", "internal_error"));
  }
}

// The error event a stream ends with when generation fails after the 200 was sent.
std::string stream_error_event(std::exception_ptr error) {
  httplib::Response tmp;
  send_error(tmp, error);
  return "data: " + tmp.body + "\n\n";
}

std::string sse(const ojson& j) { return "data: " + dump(j) + "\n\n"; }

void log_line(const std::string& text) {
  const std::time_t now = std::time(nullptr);
  fmt::print(stderr, "[{:%Y-%m-%d %H:%M:%S}] {}\n", fmt::localtime(now), text);
}

void log_generation(const std::string& remote, const std::string& path, int status, bool stream, const UsageCounts& u,
                    const std::string& finish, Clock::time_point t0, double first_byte) {
  const double total = std::chrono::duration<double>(Clock::now() - t0).count();
  const double tps = u.decode_seconds > 0 && u.completion_tokens > 1 ? (u.completion_tokens - 1) / u.decode_seconds : 0.0;
  log_line(fmt::format("{} {} {} {} | prompt {} tok (cached {}) | out {} tok | queue {:.3f}s | ttft {:.3f}s | {:.1f} tok/s | "
                       "total {:.3f}s | {}",
                       remote, path, status, stream ? "stream" : "json", u.prompt_tokens, u.cached_tokens,
                       u.completion_tokens, u.queue_seconds, first_byte, tps, total, finish));
}


}  // namespace

HttpServer::HttpServer(CompletionService& service, HttpOptions options)
    : service_(service), options_(std::move(options)) {
  // Requests whose framing is refused before httplib sees them (bad Content-Length or chunk size, a header
  // line without a colon, a body over the limit) get the same JSON error body as every other error.
  http_ = std::make_unique<FramedHttpServer>([log = options_.log_requests](int status, const std::string& message,
                                                                          const std::string& remote) {
    if (log) log_line(fmt::format("{} (framing) {} | {}", remote, status, message));
    return dump(error_json(message, status >= 500 ? "server_error" : "invalid_request_error", "", ""));
  });
  const size_t threads = static_cast<size_t>(std::max(2, options_.threads));
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(options_.max_body_bytes);
  // Remember the listening socket (replacing httplib's default options, of which only SO_REUSEADDR is
  // wanted) so bind() can enlarge its backlog.
  http_->set_socket_options([this](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const char*>(&yes), sizeof(yes));
    listen_fd_ = static_cast<int>(sock);
  });
  http_->set_keep_alive_timeout(5);
  // A loaded machine (the model uses every core) can delay a client's request past httplib's 5 s default;
  // closing the socket then resets the client instead of serving it.
  http_->set_read_timeout(60);
  routes();
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
  int port = options_.port;
  if (port == 0) port = http_->bind_to_any_port(options_.host);
  else if (!http_->bind_to_port(options_.host, port)) port = -1;
  if (port < 0) throw Error(fmt::format("cannot listen on {}:{} (address in use or not available)", options_.host, options_.port));
  // cpp-httplib (0.11, as Debian builds it) listens with a backlog of 5: a burst of clients overflows it
  // while the accept thread waits for a core, and the kernel then resets connections. Calling listen()
  // again on the bound socket enlarges the queue (POSIX; Linux and macOS honour it).
  if (listen_fd_ >= 0) ::listen(listen_fd_, 512);
  return port;
}

void HttpServer::serve() { http_->listen_after_bind(); }

void HttpServer::stop() {
  // Running generations end like a disconnected client's (cancelled), so that stopping waits for no
  // completion however long; idle and half-sent connections end within 100 ms (http_connection.cpp).
  stopping_ = true;
  if (http_ && http_->is_running()) http_->stop();
}

void HttpServer::routes() {
  httplib::Server& s = *http_;
  s.set_default_headers({{"Access-Control-Allow-Origin", "*"}});
  s.Options(R"(.*)", [](const httplib::Request&, httplib::Response& res) {
    res.status = 204;
    res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type, x-api-key, anthropic-version");
  });
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const bool guarded = req.path.rfind("/v1/", 0) == 0 || req.path == "/apply-template";
    if (options_.api_key.empty() || !guarded || req.method == "OPTIONS")
      return httplib::Server::HandlerResponse::Unhandled;
    // Anthropic clients send the key as x-api-key; either header is accepted on every route.
    if (req.get_header_value("Authorization") == "Bearer " + options_.api_key || req.get_header_value("x-api-key") == options_.api_key)
      return httplib::Server::HandlerResponse::Unhandled;
    auto error = std::make_exception_ptr(ApiError(401, req.has_header("Authorization") || req.has_header("x-api-key")
                                                           ? "Incorrect API key provided"
                                                           : "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
                                                       "", "invalid_api_key"));
    if (req.path.rfind("/v1/messages", 0) == 0) {
      auto [status, body] = anthropic_error_for(error);
      send_json(res, status, body);
    } else {
      send_error(res, error);
    }
    if (options_.log_requests) log_line(fmt::format("{} {} 401", req.remote_addr, req.path));
    return httplib::Server::HandlerResponse::Handled;
  });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string msg = res.status == 404 ? fmt::format("no route for {} {}", req.method, req.path)
                            : res.status == 413 ? "the request body is too large"
                                                : fmt::format("HTTP error {}", res.status);
    send_json(res, res.status, error_json(msg, res.status >= 500 ? "server_error" : "invalid_request_error", "", ""));
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr e) { send_error(res, e); });

  s.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content(chat_page_html(), "text/html; charset=utf-8"); });
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const WorkerStatus st = service_.status();
    send_json(res, 200, ojson{{"status", "ok"}, {"model", service_.options().model_name}, {"queued", st.queued},
                              {"busy", st.busy}, {"running", st.running}, {"parallel", st.parallel},
                              {"queue_capacity", st.queue_capacity},
                              {"prompt_cache_entries", st.prompt_cache_entries}, {"prompt_cache_bytes", st.prompt_cache_bytes}});
  });
  auto model_json = [this] {
    return ojson{{"id", service_.options().model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "k2mlx"},
                 {"context_length", service_.options().context}};
  };
  s.Get("/v1/models", [model_json](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, ojson{{"object", "list"}, {"data", ojson::array({model_json()})}});
  });
  s.Get(R"(/v1/models/(.+))", [this, model_json](const httplib::Request& req, httplib::Response& res) {
    if (req.matches[1] != service_.options().model_name)
      throw ApiError(404, fmt::format("The model '{}' does not exist", req.matches[1].str()), "model", "model_not_found");
    send_json(res, 200, model_json());
  });

  auto generation = [this](bool chat) {
    return [this, chat](const httplib::Request& req, httplib::Response& res) {
      const auto t0 = Clock::now();
      std::shared_ptr<RunningRequest> running;
      try {
        ApiRequest parsed = chat ? parse_chat_request(req.body) : parse_completion_request(req.body);
        running = service_.start(service_.prepare(std::move(parsed)));
      } catch (...) {
        send_error(res, std::current_exception());
        if (options_.log_requests) log_line(fmt::format("{} {} {} | {}", req.remote_addr, req.path, res.status,
                                                        ojson::parse(res.body)["error"]["message"].get<std::string>()));
        return;
      }
      const ApiRequest& r = running->prepared().request;
      const ResponseMeta meta = new_response_meta(chat, r.model.empty() ? service_.options().model_name : r.model);
      auto feed = std::make_shared<GenerationFeed>(running, client_gone_check(req.local_addr, req.local_port, req.remote_addr, req.remote_port, stopping_));
      const bool log = options_.log_requests;

      if (!r.stream) {
        Progress all;
        if (!feed->all(all)) {
          feed->abandon();
          if (log) log_generation(req.remote_addr, req.path, 499, false, running->usage(), "client disconnected", t0, feed->first_byte_seconds());
          return;
        }
        if (all.error) {
          send_error(res, all.error);
        } else if (chat) {
          send_json(res, 200, chat_completion_json(meta, all.delta, all.finish_reason, running->usage(),
                                                   r.logprobs >= 0 ? chat_logprobs_json(all.logprobs) : ojson()));
        } else {
          std::vector<LogprobEntry> scored = running->prompt_logprobs();
          scored.insert(scored.end(), all.logprobs.begin(), all.logprobs.end());
          send_json(res, 200, text_completion_json(meta, running->prepared().echo + all.delta.content, all.finish_reason,
                                                   running->usage(), r.logprobs >= 0 ? completion_logprobs_json(scored) : ojson()));
        }
        if (log) log_generation(req.remote_addr, req.path, res.status, false, running->usage(), all.error ? "error" : all.finish_reason, t0,
                                feed->first_byte_seconds());
        return;
      }

      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Accel-Buffering", "no");
      res.set_chunked_content_provider(
          "text/event-stream",
          [running, feed, meta, chat, t0, log, req_addr = req.remote_addr, req_path = req.path](size_t, httplib::DataSink& sink) {
            const bool usage = running->prepared().request.include_usage;
            auto finish_log = [&](int status, const std::string& why) {
              if (log) log_generation(req_addr, req_path, status, true, running->usage(), why, t0, feed->first_byte_seconds());
            };
            auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
            bool ok = chat ? write(sse(chat_chunk_json(meta, ojson{{"role", "assistant"}, {"content", ""}}, "", usage)))
                           : true;
            if (!running->prepared().echo.empty())
              ok = ok && write(sse(text_chunk_json(meta, running->prepared().echo, "", usage)));
            const bool want_logprobs = running->prepared().request.logprobs >= 0;
            size_t text_offset = running->prepared().echo.size();
            Progress p;
            while (ok && feed->next(p)) {
              if (!p.delta.empty() || !p.logprobs.empty()) {
                if (chat) {
                  ok = write(sse(chat_chunk_json(meta, chat_delta_json(p.delta), "", usage,
                                                 want_logprobs ? chat_logprobs_json(p.logprobs) : ojson())));
                } else if (!p.delta.content.empty() || !p.logprobs.empty()) {
                  ojson lp = want_logprobs ? completion_logprobs_json(p.logprobs, text_offset) : ojson();
                  for (const auto& e : p.logprobs) text_offset += e.chosen.bytes.size();
                  ok = write(sse(text_chunk_json(meta, p.delta.content, "", usage, std::move(lp))));
                }
              }
              if (ok && p.done) {
                if (p.error) {
                  write(stream_error_event(p.error));
                  finish_log(500, "error");
                } else {
                  ok = chat ? write(sse(chat_chunk_json(meta, ojson::object(), p.finish_reason, usage)))
                            : write(sse(text_chunk_json(meta, "", p.finish_reason, usage)));
                  if (ok && usage) ok = write(sse(usage_chunk_json(meta, chat, running->usage())));
                  if (ok) write("data: [DONE]\n\n");
                  finish_log(200, p.finish_reason);
                }
                sink.done();
                return true;
              }
            }
            // The client went away: stop generating and free the worker for the next request.
            feed->abandon();
            finish_log(499, "client disconnected");
            return false;
          },
          [running](bool) { running->cancel(); });
    };
  };
  // llama.cpp's route: the prompt a chat request renders to, without generating.
  s.Post("/apply-template", [this](const httplib::Request& req, httplib::Response& res) {
    const PreparedRequest p = service_.prepare(parse_chat_request(req.body));
    send_json(res, 200, ojson{{"prompt", p.prompt_text}, {"tokens", p.prompt.size()}});
  });
  s.Post("/v1/chat/completions", generation(true));
  s.Post("/v1/completions", generation(false));
  add_messages_routes(s, service_, options_.log_requests, stopping_);
}

}  // namespace k2
