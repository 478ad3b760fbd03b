// /v1/messages: parse -> prepare -> queue, then follow the running request through the same GenerationFeed as
// the OpenAI routes, writing one message object or the event stream.
#include "server/messages_route.h"

#include <httplib.h>
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <ctime>
#include <random>
#include <thread>

#include "server/anthropic_messages.h"
#include "server/api_error.h"
#include "server/connection_probe.h"
#include "server/generation_feed.h"

namespace k2 {
namespace {

using ojson = nlohmann::ordered_json;

std::string message_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("msg_{:016x}{:08x}", rng(), static_cast<uint32_t>(rng()));
}

void log_line(const std::string& remote, const std::string& path, int status, const std::string& what) {
  const std::time_t now = std::time(nullptr);
  fmt::print(stderr, "[{:%Y-%m-%d %H:%M:%S}] {} {} {} | {}\n", fmt::localtime(now), remote, path, status, what);
}

void log_line(const httplib::Request& req, int status, const std::string& what) { log_line(req.remote_addr, req.path, status, what); }

void send(httplib::Response& res, int status, const ojson& j) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

}  // namespace

std::pair<int, ojson> anthropic_error_for(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const ApiError& e) {
    return {e.status(), anthropic_error_json(e.status(), e.what())};
  } catch (const BusyError& e) {
    return {529, anthropic_error_json(529, e.what())};
  } catch (const InputError& e) {
    return {400, anthropic_error_json(400, e.what())};
  } catch (const std::invalid_argument& e) {
    return {400, anthropic_error_json(400, e.what())};
  } catch (const std::exception& e) {
    return {500, anthropic_error_json(500, fmt::format("internal error: {}", e.what()))};
  } catch (...) {
    return {500, anthropic_error_json(500, "internal error")};
  }
}

void add_messages_routes(httplib::Server& s, CompletionService& service, bool log, const std::atomic<bool>& stopping) {
  s.Post("/v1/messages/count_tokens", [&service, log](const httplib::Request& req, httplib::Response& res) {
    try {
      const PreparedRequest p = service.prepare(parse_messages_request(req.body, true));
      send(res, 200, ojson{{"input_tokens", p.prompt.size()}});
    } catch (...) {
      auto [status, body] = anthropic_error_for(std::current_exception());
      send(res, status, body);
      if (log) log_line(req, status, body["error"]["message"].get<std::string>());
    }
  });

  s.Post("/v1/messages", [&service, log, &stopping](const httplib::Request& req, httplib::Response& res) {
    std::shared_ptr<RunningRequest> running;
    std::string model;
    try {
      const ojson body = ojson::parse(req.body, nullptr, false);
      if (body.is_object() && body.contains("model") && body["model"].is_string()) model = body["model"].get<std::string>();
      running = service.start(service.prepare(parse_messages_request(req.body)));
    } catch (...) {
      auto [status, body] = anthropic_error_for(std::current_exception());
      send(res, status, body);
      if (log) log_line(req, status, body["error"]["message"].get<std::string>());
      return;
    }
    const std::string id = message_id();
    auto feed = std::make_shared<GenerationFeed>(
        running, client_gone_check(req.local_addr, req.local_port, req.remote_addr, req.remote_port, stopping));

    if (!running->prepared().request.stream) {
      Progress all;
      if (!feed->all(all)) {
        feed->abandon();
        if (log) log_line(req, 499, "client disconnected");
        return;
      }
      if (all.error) {
        auto [status, body] = anthropic_error_for(all.error);
        send(res, status, body);
      } else {
        send(res, 200, anthropic_message_json(id, model, all.delta, all.finish_reason, running->matched_stop(), running->usage()));
      }
      if (log) log_line(req, res.status, fmt::format("json | prompt {} tok | out {} tok | {}", running->usage().prompt_tokens,
                                                     running->usage().completion_tokens, all.error ? "error" : all.finish_reason));
      return;
    }

    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    auto events = std::make_shared<AnthropicEventStream>(id, model);
    res.set_chunked_content_provider(
        "text/event-stream",
        [running, events, feed, log, remote = req.remote_addr, path = req.path](size_t, httplib::DataSink& sink) {
          auto write = [&](const std::string& s) { return s.empty() || sink.write(s.data(), s.size()); };
          bool ok = write(events->start(running->usage().prompt_tokens));
          Progress p;
          while (ok && feed->next(p)) {
            if (!p.delta.empty()) ok = write(events->update(p.delta));
            if (ok && p.done) {
              if (p.error) {
                auto [status, body] = anthropic_error_for(p.error);
                write(AnthropicEventStream::error_event(status, body["error"]["message"].get<std::string>()));
              } else {
                write(events->finish(p.finish_reason, running->matched_stop(), running->usage()));
              }
              if (log) log_line(remote, path, 200, fmt::format("stream | prompt {} tok | out {} tok | {}", running->usage().prompt_tokens,
                                                           running->usage().completion_tokens, p.error ? "error" : p.finish_reason));
              sink.done();
              return true;
            }
          }
          feed->abandon();
          if (log) log_line(remote, path, 499, "client disconnected");
          return false;
        },
        [running](bool) { running->cancel(); });
  });
}

}  // namespace k2
