// `k2mlx serve`: loads the model once, starts the generation worker and the OpenAI-compatible HTTP
// server (with the chat page at /), and serves until SIGINT / SIGTERM. As one rank of a pipeline job
// (`k2mlx launch -n 2 -- serve ...`) rank 0 serves HTTP and the other ranks follow its requests.
#include <atomic>
#include <csignal>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <pthread.h>
#include <thread>

#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "engine/local_step.h"
#include "engine/worker.h"
#include "launcher.h"
#include "mlx/mlx.h"
#include "pipeline/pipeline_step.h"
#include "prefill_flags.h"
#include "rank_setup.h"
#include "server/completion_service.h"
#include "server/http_server.h"
#include "text_io.h"

namespace k2::cli {

namespace {

struct ServeFlags {
  ModelFlags model;
  StageFlags stage;
  HttpOptions http;
  std::string model_name;
  int context = 0;
  int max_tokens = 4096;
  size_t queue = 16;
  int parallel = 4;
  int step_tokens = 0;
  int micro_batches = 0;  // pipeline: decode micro-batches in flight (0 = one per rank)
  double prompt_cache_mib = 2048;
  int prompt_cache_entries = 8;
  PrefillFlags prefill;
  std::string chat_template;         // a Jinja file replacing the folder's template
  std::string chat_template_kwargs;  // JSON object: template variables under each request's own
  std::string reasoning_format = "separate";
};

// A pipeline that lost a rank: the generation worker reports it, the HTTP server is stopped and the
// command exits with kExitPeerLost (the HTTP server may not exist yet when the loss happens).
class LostPipeline {
 public:
  void attach(HttpServer* server) {
    std::lock_guard lock(mutex_);
    server_ = server;
    if (lost_ && server_) server_->stop();
  }
  void report(const std::string& message) {
    std::lock_guard lock(mutex_);
    if (lost_) return;
    lost_ = true;
    fmt::print(stderr, "{}; stopping the server\n", message);
    std::fflush(stderr);
    if (server_) server_->stop();
  }
  bool lost() const {
    std::lock_guard lock(mutex_);
    return lost_;
  }

 private:
  mutable std::mutex mutex_;
  HttpServer* server_ = nullptr;
  bool lost_ = false;
};

nlohmann::ordered_json parse_template_kwargs(const std::string& text) {
  if (text.empty()) return nlohmann::ordered_json::object();
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("--chat-template-kwargs is not valid JSON: {}", e.what()));
  }
  if (!j.is_object()) throw InputError(fmt::format("--chat-template-kwargs must be a JSON object, got {}", j.type_name()));
  return j;
}

// Serves HTTP through `worker` until a signal (or the lost pipeline) stops the server.
void serve_http(ServeFlags& f, const TextModel& text, const ModelConfig& config, TokenGenerator& worker,
                sigset_t signals, LostPipeline* lost) {
  const int max_context = config.max_position_embeddings;
  ServiceOptions so;
  const std::string dir_name = std::filesystem::path(f.model.model_dir).lexically_normal().filename().string();
  so.model_name = !f.model_name.empty() ? f.model_name
                  : !dir_name.empty()   ? dir_name
                                        : std::filesystem::path(f.model.model_dir).parent_path().filename().string();
  so.model_aliases = {f.model.model_dir};
  so.context = f.context > 0 ? f.context : max_context;
  so.default_max_tokens = f.max_tokens;
  so.stop_tokens = stop_tokens(config, &text);
  so.chat_template_kwargs = parse_template_kwargs(f.chat_template_kwargs);
  so.separate_reasoning = f.reasoning_format == "separate";
  CompletionService service(*text.tokenizer, text.chat_template, worker, so);

  HttpServer server(service, f.http);
  const int port = server.bind();
  if (lost) lost->attach(&server);
  fmt::print(stderr, "k2mlx serve: model '{}' (context {} tokens{}) listening on http://{}:{}\n", so.model_name,
             so.context, text.chat_template ? "" : ", no chat template: /v1/completions only", f.http.host, port);
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
  if (lost) lost->attach(nullptr);
}

WorkerOptions worker_options(const ServeFlags& f) {
  WorkerOptions wo;
  wo.max_queue = f.queue;
  wo.parallel = f.parallel;
  wo.step_tokens = f.step_tokens;
  return wo;
}

PromptCacheOptions prompt_cache_options(const ServeFlags& f) {
  return PromptCacheOptions{static_cast<size_t>(f.prompt_cache_mib * 1024 * 1024), f.prompt_cache_entries};
}

void check_context(const ServeFlags& f, const ModelConfig& config) {
  const int max_context = config.max_position_embeddings;
  if (f.context < 0 || f.context > max_context)
    throw InputError(fmt::format("--context must be between 1 and the model's {} tokens, got {}", max_context, f.context));
}

// One rank of a pipeline job: rank 0 serves HTTP with a PipelineStep under the engine, the others follow it.
// Returns nothing when the job has a single rank (then the caller serves locally).
std::optional<int> serve_pipeline(ServeFlags& f, sigset_t signals) {
  install_crash_handler();
  mlx::core::distributed::Group group = join_group(f.stage);
  const int rank = group.rank(), size = group.size();
  if (size == 1) return std::nullopt;
  const ModelConfig config = load_model_config(f.model.model_dir);
  check_context(f, config);
  const auto ranges = stage_ranges(f.stage, f.model.model_dir, config, size);
  LoadOptions o = f.model.load_options();
  o.first_layer = ranges[rank].first;
  o.last_layer = ranges[rank].second;
  o.load_embedding = rank == 0;
  o.load_head = rank == size - 1;
  std::optional<TextModel> text;
  if (rank == 0) text = TextModel::load(f.model.model_dir, f.chat_template);
  Model stage = load_model(f.model, o);
  StageLink link(stage, group);
  set_crash_link(&link);
  guarded(link, [&] { link.handshake(); return 0; });
  if (!f.model.quiet)
    fmt::print(stderr, "[rank {}/{}] layers [{}, {}){}{} ready{}\n", rank, size, o.first_layer, o.last_layer,
               o.load_embedding ? " +embedding" : "", o.load_head ? " +lm_head" : "",
               rank == 0 ? ", serving HTTP" : ", following rank 0");
  if (rank > 0) {
    pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);  // the launcher stops followers with SIGTERM
    const FollowStats stats = guarded(link, [&] { return follow(link); });
    if (!f.model.quiet)
      fmt::print(stderr, "[rank {}/{}] rank 0 shut the job down after {} requests ({} cancelled)\n", rank, size,
                 stats.requests, stats.cancelled);
  } else {
    LostPipeline lost;
    PipelineStepOptions po;
    po.prefill = f.prefill.chunking();
    po.reuse_prompts = f.prompt_cache_mib > 0 && f.prompt_cache_entries > 0;
    po.slots = f.parallel;
    po.micro_batches = f.micro_batches;
    auto step = std::make_unique<PipelineStep>(
        link, po, [&](const std::exception& e) { lost.report(peer_lost(e, link).what()); });
    {
      GenerationWorker worker(std::move(step), worker_options(f));  // its destructor sends kShutdown
      serve_http(f, *text, config, worker, signals, &lost);
    }
    if (lost.lost()) return kExitPeerLost;
  }
  // Leave together: a rank that exits while a neighbour still reads would look like a lost peer.
  guarded(link, [&] { mlx::core::eval(mlx::core::distributed::all_sum(mlx::core::array(1.0f), group)); return 0; });
  set_crash_link(nullptr);
  return 0;
}

}  // namespace

Command add_serve(CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve the model over an OpenAI-compatible HTTP API with a chat page");
  f->model.add_to(*cmd);
  f->stage.add_to(*cmd);
  cmd->add_option("--host", f->http.host, "Address to listen on (0.0.0.0 opens the server to the network)")
      ->capture_default_str();
  cmd->add_option("--port", f->http.port, "Port to listen on (0 = any free port, printed at start)")->capture_default_str();
  cmd->add_option("--api-key", f->http.api_key, "Require 'Authorization: Bearer KEY' on /v1/ requests");
  cmd->add_option("--served-model-name", f->model_name, "Model id reported by /v1/models (default: the folder name)");
  cmd->add_option("--context", f->context,
                  "Tokens per request, prompt + completion (default: the model's max_position_embeddings)");
  cmd->add_option("--max-tokens", f->max_tokens, "Completion limit for chat requests that set none")->capture_default_str();
  cmd->add_option("--parallel", f->parallel,
                  "Sequences generated together (continuous batching); further requests wait in the queue")
      ->capture_default_str();
  cmd->add_option("--step-tokens", f->step_tokens,
                  "Tokens per engine step, decode rows and prompt chunks together, so that a request arriving during a "
                  "long prefill waits for one short step (0 = one --prefill-chunk per step)")
      ->capture_default_str();
  cmd->add_option("--micro-batches", f->micro_batches,
                  "Pipeline: groups of sequences whose decode steps are in flight at once, so that every rank works "
                  "(0 = one per rank; 1 = all sequences in one step, the ranks taking turns)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--queue", f->queue, "Requests that may wait for a place in the batch before new ones get 503")
      ->capture_default_str();
  cmd->add_option("--prompt-cache-mib", f->prompt_cache_mib,
                  "Memory for KV caches of earlier prompts, reused by follow-up turns (0 = off)")
      ->capture_default_str();
  cmd->add_option("--prompt-cache-entries", f->prompt_cache_entries, "How many earlier prompts to keep at most")
      ->capture_default_str();
  cmd->add_option("--chat-template", f->chat_template, "Jinja chat template file to use instead of the model folder's");
  cmd->add_option("--chat-template-kwargs", f->chat_template_kwargs,
                  "JSON object of chat template variables, e.g. '{\"thinking\": true}' (a request's chat_template_kwargs "
                  "override them)");
  cmd->add_option("--reasoning-format", f->reasoning_format,
                  "separate: the model's <think> block goes to reasoning_content; inline: it stays in the content")
      ->check(CLI::IsMember({"separate", "inline"}))
      ->capture_default_str();
  f->prefill.add_to(*cmd);
  cmd->add_option("--http-threads", f->http.threads, "HTTP worker threads (each open request holds one)")
      ->capture_default_str();
  cmd->add_flag("!--no-log-requests", f->http.log_requests, "Do not log one line per request");
  return [f]() {
    if (f->queue < 1) throw InputError("--queue must be at least 1");
    if (f->parallel < 1) throw InputError(fmt::format("--parallel must be at least 1, got {}", f->parallel));
    if (f->step_tokens < 0) throw InputError(fmt::format("--step-tokens must be >= 0, got {}", f->step_tokens));
    if (f->max_tokens < 1) throw InputError(fmt::format("--max-tokens must be at least 1, got {}", f->max_tokens));
    if (f->prompt_cache_mib < 0) throw InputError("--prompt-cache-mib must be >= 0");
    parse_template_kwargs(f->chat_template_kwargs);  // refuse bad JSON before loading the model
    // Signals go to a waiting thread (not async handlers); a vanished client must not kill the process.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    if (f->stage.wanted()) {
      try {
        if (std::optional<int> rc = serve_pipeline(*f, signals)) return *rc;
      } catch (const PeerLost& e) {
        fmt::print(stderr, "{}\n", e.what());
        return kExitPeerLost;
      }
    }
    TextModel text = TextModel::load(f->model.model_dir, f->chat_template);
    Model model = load_model(f->model, f->model.load_options());
    check_context(*f, model.config());
    GenerationWorker worker(std::make_unique<LocalStep>(model, f->prefill.chunking(), prompt_cache_options(*f)),
                            worker_options(*f));
    serve_http(*f, text, model.config(), worker, signals, nullptr);
    return 0;
  };
}

}  // namespace k2::cli
