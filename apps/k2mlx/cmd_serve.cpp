// `k2mlx serve`: loads the model once, starts the generation worker and the OpenAI-compatible HTTP
// server (with the chat page at /), and serves until SIGINT / SIGTERM.
#include <atomic>
#include <csignal>
#include <filesystem>
#include <pthread.h>
#include <thread>

#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "engine/worker.h"
#include "server/completion_service.h"
#include "server/http_server.h"
#include "text_io.h"

namespace k2::cli {

namespace {

struct ServeFlags {
  ModelFlags model;
  HttpOptions http;
  std::string model_name;
  int context = 0;
  int max_tokens = 4096;
  size_t queue = 16;
  double prompt_cache_mib = 2048;
  int prompt_cache_entries = 8;
  int prefill_chunk = 512;
};

}  // namespace

Command add_serve(CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve the model over an OpenAI-compatible HTTP API with a chat page");
  f->model.add_to(*cmd);
  cmd->add_option("--host", f->http.host, "Address to listen on (0.0.0.0 opens the server to the network)")
      ->capture_default_str();
  cmd->add_option("--port", f->http.port, "Port to listen on (0 = any free port, printed at start)")->capture_default_str();
  cmd->add_option("--api-key", f->http.api_key, "Require 'Authorization: Bearer KEY' on /v1/ requests");
  cmd->add_option("--served-model-name", f->model_name, "Model id reported by /v1/models (default: the folder name)");
  cmd->add_option("--context", f->context,
                  "Tokens per request, prompt + completion (default: the model's max_position_embeddings)");
  cmd->add_option("--max-tokens", f->max_tokens, "Completion limit for chat requests that set none")->capture_default_str();
  cmd->add_option("--queue", f->queue, "Requests that may wait for the generation worker before new ones get 503")
      ->capture_default_str();
  cmd->add_option("--prompt-cache-mib", f->prompt_cache_mib,
                  "Memory for KV caches of earlier prompts, reused by follow-up turns (0 = off)")
      ->capture_default_str();
  cmd->add_option("--prompt-cache-entries", f->prompt_cache_entries, "How many earlier prompts to keep at most")
      ->capture_default_str();
  cmd->add_option("--prefill-chunk", f->prefill_chunk, "Prefill long prompts this many tokens at a time")
      ->capture_default_str();
  cmd->add_option("--http-threads", f->http.threads, "HTTP worker threads (each open request holds one)")
      ->capture_default_str();
  cmd->add_flag("!--no-log-requests", f->http.log_requests, "Do not log one line per request");
  return [f]() {
    if (f->queue < 1) throw InputError("--queue must be at least 1");
    if (f->max_tokens < 1) throw InputError(fmt::format("--max-tokens must be at least 1, got {}", f->max_tokens));
    if (f->prompt_cache_mib < 0) throw InputError("--prompt-cache-mib must be >= 0");
    // Signals go to a waiting thread (not async handlers); a vanished client must not kill the process.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    TextModel text = TextModel::load(f->model.model_dir);
    Model model = load_model(f->model, f->model.load_options());
    const int max_context = model.config().max_position_embeddings;
    if (f->context < 0 || f->context > max_context)
      throw InputError(fmt::format("--context must be between 1 and the model's {} tokens, got {}", max_context, f->context));

    WorkerOptions wo;
    wo.max_queue = f->queue;
    wo.prefill_chunk = f->prefill_chunk;
    wo.prompt_cache.max_bytes = static_cast<size_t>(f->prompt_cache_mib * 1024 * 1024);
    wo.prompt_cache.max_entries = f->prompt_cache_entries;
    GenerationWorker worker(model, wo);

    ServiceOptions so;
    const std::string dir_name = std::filesystem::path(f->model.model_dir).lexically_normal().filename().string();
    so.model_name = !f->model_name.empty() ? f->model_name
                    : !dir_name.empty()    ? dir_name
                                           : std::filesystem::path(f->model.model_dir).parent_path().filename().string();
    so.model_aliases = {f->model.model_dir};
    so.context = f->context > 0 ? f->context : max_context;
    so.default_max_tokens = f->max_tokens;
    so.stop_tokens = text.stop_tokens(model.config().eos_token_ids);
    CompletionService service(*text.tokenizer, text.chat_template, worker, so);

    HttpServer server(service, f->http);
    const int port = server.bind();
    fmt::print(stderr, "k2mlx serve: model '{}' (context {} tokens{}) listening on http://{}:{}\n", so.model_name,
               so.context, text.chat_template ? "" : ", no chat template: /v1/completions only", f->http.host, port);
    std::atomic<bool> signalled{false};
    std::thread stopper([&] {
      int sig = 0;
      sigwait(&signals, &sig);
      if (signalled.exchange(true)) return;  // woken by the main thread below
      fmt::print(stderr, "k2mlx serve: stopping (signal {})\n", sig);
      server.stop();
    });
    server.serve();
    if (!signalled.exchange(true)) pthread_kill(stopper.native_handle(), SIGTERM);  // serve() ended on its own
    stopper.join();
    return 0;
  };
}

}  // namespace k2::cli
