// `k2mlx pipeline`: one rank of a layer-pipelined job (started by `k2mlx launch`, mpirun, or by hand
// with MLX_RANK / MLX_HOSTFILE). Joins the group, loads only its layer range, then generates or
// computes logits with the other ranks. Owns the rank's process concerns: join timeout, crash message.
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "io/npy.h"
#include "mlx/mlx.h"
#include "model/footprint.h"
#include "pipeline/launcher.h"
#include "pipeline/plan.h"
#include "pipeline/stage_runner.h"

namespace k2::cli {
namespace mx = mlx::core;

namespace {

struct PipelineFlags {
  ModelFlags model;
  std::string ids, ids_out, logits_out, stats_out, stages, plan, backend = "any";
  bool all_positions = false, no_overlap = false, ignore_eos = false;
  int max_tokens = 32, prefill_chunk = 512;
  double connect_timeout = 60;
  SamplingParams sampling;
};

// What the crash handler needs: MLX's ring backend throws on its own thread when a peer goes away,
// which ends the process through std::terminate; the handler names the peer before aborting.
std::atomic<const StageRunner*> g_runner{nullptr};
std::atomic<int> g_rank{-1}, g_size{0};

// A neighbour went away: reported with its own exit code so that a launcher can tell the rank that
// failed first from the ranks that merely lost it.
struct PeerLost : Error {
  using Error::Error;
};

std::string lost_peer(int rank, int size, int peer) {
  if (peer >= 0) return fmt::format("rank {}", peer);
  if (size > 1) return fmt::format("rank {} or rank {}", (rank + size - 1) % size, (rank + 1) % size);
  return "a peer";
}

[[noreturn]] void on_terminate() {
  std::string what = "unknown error";
  if (auto e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      what = ex.what();
    } catch (...) {
    }
  }
  const int rank = g_rank.load(), size = g_size.load();
  const StageRunner* runner = g_runner.load();
  const std::string lost = lost_peer(rank, size, runner ? runner->waiting_on() : -1);
  fmt::print(stderr, "[rank {}] error: lost the connection to {} ({}); it has probably exited or its machine is "
                     "unreachable. This rank cannot continue and aborts.\n", rank, lost, what);
  std::fflush(stderr);
  std::abort();
}

// Ends the process when joining the group takes longer than `seconds`: MLX's ring backend waits in
// accept() without a limit for a neighbour that never starts.
class JoinWatchdog {
 public:
  JoinWatchdog(double seconds, int rank, int size) {
    if (seconds <= 0) return;
    thread_ = std::thread([this, seconds, rank, size] {
      std::unique_lock lock(mutex_);
      if (cv_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return done_; })) return;
      fmt::print(stderr, "[rank {}] error: the ranks did not all connect within {:.0f} s (--connect-timeout). "
                         "Rank {} waits for its neighbours{}; check that every rank was started and that the hostfile "
                         "addresses are reachable.\n", rank, seconds, rank,
                 size > 1 ? fmt::format(" rank {} and rank {}", (rank + size - 1) % size, (rank + 1) % size) : "");
      std::fflush(stderr);
      std::_Exit(3);  // the main thread is blocked inside MLX's accept(); nothing else can unblock it
    });
  }
  ~JoinWatchdog() { cancel(); }
  void cancel() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

// The job size before joining (for messages): the launcher's MLX_WORLD_SIZE, mpirun's, or the
// number of entries in the ring hostfile.
int expected_size() {
  if (int n = env_int("MLX_WORLD_SIZE", env_int("OMPI_COMM_WORLD_SIZE", 0)); n > 0) return n;
  if (const char* path = std::getenv("MLX_HOSTFILE")) {
    std::ifstream in(path);
    const auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_array()) return static_cast<int>(j.size());
  }
  return 0;
}

std::string for_rank(const std::string& path, int rank) {
  std::string p = path;
  const auto at = p.find("{rank}");
  if (at != std::string::npos) p.replace(at, 6, std::to_string(rank));
  return p;
}

std::vector<std::pair<int, int>> stage_ranges(const PipelineFlags& f, const ModelConfig& c, int size) {
  std::vector<std::pair<int, int>> ranges;
  const int n = c.num_hidden_layers;
  if (!f.stages.empty()) {
    ranges = parse_stage_ranges(f.stages, n);
  } else if (!f.plan.empty()) {
    std::ifstream in(f.plan);
    if (!in) throw InputError(fmt::format("--plan {} cannot be opened", f.plan));
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(fmt::format("--plan {} is not valid JSON: {}", f.plan, e.what()));
    }
    ranges = ranges_from_plan_json(j, "--plan " + f.plan);
    check_stage_ranges(ranges, n, "--plan " + f.plan);
  } else {
    // Equal machines: the memory strategy balances checkpoint bytes.
    std::vector<NodeSpec> nodes(size);
    for (int r = 0; r < size; ++r) nodes[r] = {fmt::format("rank{}", r), 1e18, 0, std::nullopt};
    PlanRequest req;
    req.context = 4096;
    const Plan p = make_plan(c, costs_from_checkpoint(Checkpoint(f.model.model_dir), c), nodes, req);
    for (const auto& s : p.stages) ranges.emplace_back(s.first, s.last);
  }
  if (static_cast<int>(ranges.size()) != size)
    throw InputError(fmt::format("{} stages are given but the job has {} ranks", ranges.size(), size));
  return ranges;
}

}  // namespace

int run_rank(PipelineFlags& f);

Command add_pipeline(CLI::App& app) {
  auto f = std::make_shared<PipelineFlags>();
  CLI::App* cmd = app.add_subcommand(
      "pipeline", "Run one rank of a layer-split job (start all ranks with `k2mlx launch`, mpirun or MLX_RANK/MLX_HOSTFILE)");
  f->model.add_to(*cmd);
  cmd->add_option("--ids", f->ids, "Prompt as comma-separated token ids (the same on every rank)")->required();
  cmd->add_option("--max-tokens,-n", f->max_tokens, "Maximum number of tokens to generate")->capture_default_str();
  cmd->add_option("--temp,--temperature", f->sampling.temperature, "Sampling temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-k", f->sampling.top_k, "Keep the K most likely tokens (0 = off)");
  cmd->add_option("--top-p", f->sampling.top_p, "Nucleus sampling mass (1 = off)");
  cmd->add_option("--min-p", f->sampling.min_p, "Min-p filter (0 = off)");
  cmd->add_option("--repetition-penalty", f->sampling.repetition_penalty, "Repetition penalty (1 = off)");
  cmd->add_option("--repetition-context", f->sampling.repetition_context, "Tokens the penalty looks back over");
  cmd->add_option("--seed", f->sampling.seed, "Sampling seed (the last rank samples)")->capture_default_str();
  cmd->add_flag("--ignore-eos", f->ignore_eos, "Do not stop at the model's end-of-sequence tokens");
  cmd->add_option("--ids-out", f->ids_out,
                  "Write the generated ids as JSON; '{rank}' in the path is replaced (without it only rank 0 writes)");
  cmd->add_option("--logits-out", f->logits_out,
                  "Compute logits instead of generating; the last rank writes them as float32 .npy");
  cmd->add_flag("--all-positions", f->all_positions, "With --logits-out: every position, not just the last");
  cmd->add_option("--stages", f->stages, "Layer range per rank, e.g. 0:1,1:4 (default: balanced by checkpoint bytes)");
  cmd->add_option("--plan", f->plan, "Layer ranges from `k2mlx plan --json-out`");
  cmd->add_option("--backend", f->backend, "MLX distributed backend: any, ring, mpi, jaccl, nccl")->capture_default_str();
  cmd->add_option("--connect-timeout", f->connect_timeout, "Seconds to wait for all ranks to connect (0 = forever)")
      ->capture_default_str();
  cmd->add_option("--prefill-chunk", f->prefill_chunk, "Prompt tokens per prefill chunk (chunks flow through the stages back to back)")
      ->capture_default_str();
  cmd->add_flag("--no-overlap", f->no_overlap, "Wait for the last stage after each prefill chunk (baseline for the bench)");
  cmd->add_option("--stats-out", f->stats_out, "Write this rank's statistics as JSON ('{rank}' is replaced)");
  return [f]() {
    try {
      return run_rank(*f);
    } catch (const PeerLost& e) {
      fmt::print(stderr, "{}\n", e.what());
      return kExitPeerLost;
    }
  };
}

int run_rank(PipelineFlags& flags) {
  auto* f = &flags;
  {
    const std::vector<int> ids = parse_ids(f->ids);
    f->sampling.validate();
    std::signal(SIGPIPE, SIG_IGN);  // a closed peer socket must surface as an error, not kill us silently
    std::set_terminate(on_terminate);
    const int env_rank = env_int("MLX_RANK", env_int("OMPI_COMM_WORLD_RANK", 0));
    g_rank = env_rank;

    mx::distributed::Group group = [&] {
      JoinWatchdog watchdog(f->connect_timeout, env_rank, expected_size());
      try {
        return mx::distributed::init(f->backend != "any", f->backend);
      } catch (const std::exception& e) {
        throw Error(fmt::format("rank {}: could not join the job over the '{}' backend: {} (check that every rank was "
                                "started and that the hostfile addresses are reachable)", env_rank, f->backend, e.what()));
      }
    }();
    const int rank = group.rank(), size = group.size();
    g_rank = rank;
    g_size = size;

    const ModelConfig config = load_model_config(f->model.model_dir);
    const auto ranges = stage_ranges(*f, config, size);
    LoadOptions o = f->model.load_options();
    o.first_layer = ranges[rank].first;
    o.last_layer = ranges[rank].second;
    o.load_embedding = rank == 0;
    o.load_head = rank == size - 1;
    const size_t active_before = mx::get_active_memory();
    Model stage = load_model(f->model, o);
    mx::clear_cache();
    const size_t loaded_active = mx::get_active_memory() - active_before;

    PipelineOptions po;
    po.prefill_chunk = f->prefill_chunk;
    po.overlap = !f->no_overlap;
    StageRunner runner(stage, group, po);
    g_runner = &runner;
    // MLX reports a vanished neighbour as a plain runtime_error from eval; name the rank instead.
    auto guarded = [&](auto&& body) {
      try {
        return body();
      } catch (const InputError&) {
        throw;
      } catch (const std::exception& e) {
        if (size == 1) throw;
        throw PeerLost(fmt::format("[rank {}] error: lost the connection to {} ({}); it has probably exited or its "
                                   "machine is unreachable", rank, lost_peer(rank, size, runner.waiting_on()), e.what()));
      }
    };
    guarded([&] { runner.handshake(); return 0; });
    if (!f->model.quiet)
      fmt::print(stderr, "[rank {}/{}] layers [{}, {}){}{} ready\n", rank, size, o.first_layer, o.last_layer,
                 o.load_embedding ? " +embedding" : "", o.load_head ? " +lm_head" : "");

    PipelineResult result;
    if (!f->logits_out.empty()) {
      result = guarded([&] { return runner.logits(ids, f->all_positions); });
      if (result.logits) save_npy_float32(f->logits_out, *result.logits);
    } else {
      GenerateOptions go;
      go.max_tokens = f->max_tokens;
      if (!f->ignore_eos) go.stop_tokens = config.eos_token_ids;
      result = guarded([&] {
        return runner.generate(ids, f->sampling, go, [&](int id) {
          fmt::print("{} ", id);
          std::fflush(stdout);
          return true;
        });
      });
      if (rank == 0) fmt::print("\n");
      const bool placeholder = f->ids_out.find("{rank}") != std::string::npos;
      if (!f->ids_out.empty() && (placeholder || rank == 0)) {
        std::ofstream out(for_rank(f->ids_out, rank));
        if (!out) throw InputError(fmt::format("{}: cannot open for writing", for_rank(f->ids_out, rank)));
        out << fmt::format("[{}]\n", fmt::join(result.tokens, ", "));
      }
      if (!f->model.quiet && rank == 0 && result.decode_seconds > 0 && result.tokens.size() > 1)
        fmt::print(stderr, "prompt: {} tokens in {:.3f} s | generation: {} tokens, {:.2f} tok/s | finish: {}\n",
                   result.prompt_tokens, result.prefill_seconds, result.tokens.size(),
                   (result.tokens.size() - 1) / result.decode_seconds, result.finish_reason);
    }
    if (!f->stats_out.empty()) {
      const Footprint fp = measure_checkpoint(Checkpoint(f->model.model_dir), config);
      nlohmann::json s = {{"rank", rank},
                          {"size", size},
                          {"first_layer", o.first_layer},
                          {"last_layer", o.last_layer},
                          {"has_embedding", stage.has_embedding()},
                          {"has_head", stage.has_head()},
                          {"weight_bytes", stage.weights().nbytes()},
                          {"checkpoint_range_bytes", fp.range_bytes(o.first_layer, o.last_layer, o.load_embedding, o.load_head)},
                          {"checkpoint_total_bytes", fp.total()},
                          {"active_memory_after_load", loaded_active},
                          {"peak_memory", mx::get_peak_memory()},
                          {"tokens", result.tokens},
                          {"sampled", result.sampled},
                          {"finish_reason", result.finish_reason},
                          {"prompt_tokens", result.prompt_tokens},
                          {"prefill_seconds", result.prefill_seconds},
                          {"decode_seconds", result.decode_seconds}};
      std::ofstream out(for_rank(f->stats_out, rank));
      if (!out) throw InputError(fmt::format("{}: cannot open for writing", for_rank(f->stats_out, rank)));
      out << s.dump(2) << "\n";
    }
    // Leave together: a rank that exits while a neighbour still reads would look like a lost peer.
    if (size > 1) guarded([&] { mx::eval(mx::distributed::all_sum(mx::array(1.0f), group)); return 0; });
    g_runner = nullptr;
    return 0;
  }
}

}  // namespace k2::cli
