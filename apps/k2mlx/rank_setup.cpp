// Rank setup shared by `pipeline` and `serve`: the join watchdog (MLX's ring waits in accept() without a
// limit), the crash handler, the default balanced split and plan files.
#include "rank_setup.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <dlfcn.h>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "pipeline/plan.h"

namespace k2::cli {
namespace mx = mlx::core;

namespace {

// What the crash handler needs; it runs on whatever thread MLX's backend threw on.
std::atomic<const StageLink*> g_link{nullptr};
std::atomic<int> g_rank{-1}, g_size{0};

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
  const StageLink* link = g_link.load();
  const std::string lost = lost_peer(rank, size, link ? link->waiting_on() : -1);
  fmt::print(stderr, "[rank {}] error: lost the connection to {} ({}); it has probably exited or its machine is "
                     "unreachable. This rank cannot continue and aborts.\n", rank, lost, what);
  std::fflush(stderr);
  std::abort();
}

// Ends the process when joining the group takes longer than `seconds`.
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
  ~JoinWatchdog() {
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

// MLX's MPI backend dlopen()s the unversioned libmpi.so (libmpi.dylib on macOS). On Debian only Open MPI's
// development package provides that name: with just the runtime (openmpi-bin, libopenmpi3) MLX says
// "Cannot initialize MPI", which reads like a network problem. Names what is missing, or "".
std::string missing_mpi_library(const std::string& backend) {
  if (backend != "mpi" && !(backend == "any" && env_int("OMPI_COMM_WORLD_SIZE", 0) > 1)) return "";
#ifdef __APPLE__
  const char* lib = "libmpi.dylib";
  const char* install = "brew install open-mpi";
#else
  const char* lib = "libmpi.so";
  const char* install = "apt-get install libopenmpi-dev";
#endif
  if (void* handle = dlopen(lib, RTLD_LAZY | RTLD_LOCAL)) {
    dlclose(handle);
    return "";
  }
  return fmt::format("MLX's MPI backend loads {}, which is not installed ({})", lib, install);
}

}  // namespace

void StageFlags::add_to(CLI::App& app) {
  app.add_option("--stages", stages, "Layer range per rank, e.g. 0:1,1:4 (default: balanced by checkpoint bytes)");
  app.add_option("--plan", plan, "Layer ranges from `k2mlx plan --json-out`");
  app.add_option("--backend", backend, "MLX distributed backend: any, ring, mpi, jaccl, nccl")->capture_default_str();
  app.add_option("--connect-timeout", connect_timeout, "Seconds to wait for all ranks to connect (0 = forever)")
      ->capture_default_str();
}

bool StageFlags::wanted() const {
  return std::getenv("MLX_HOSTFILE") || env_int("OMPI_COMM_WORLD_SIZE", 0) > 1 || env_int("MLX_WORLD_SIZE", 0) > 1 ||
         backend != "any" || !stages.empty() || !plan.empty();
}

std::string lost_peer(int rank, int size, int peer) {
  if (peer >= 0) return fmt::format("rank {}", peer);
  if (size == 2) return fmt::format("rank {}", 1 - rank);
  if (size > 2) return fmt::format("rank {} or rank {}", (rank + size - 1) % size, (rank + 1) % size);
  return "a peer";
}

void install_crash_handler() {
  std::signal(SIGPIPE, SIG_IGN);  // a closed peer socket must surface as an error, not kill us silently
  std::set_terminate(on_terminate);
}

void set_crash_link(const StageLink* link) { g_link = link; }

mx::distributed::Group join_group(const StageFlags& f) {
  const int env_rank = env_int("MLX_RANK", env_int("OMPI_COMM_WORLD_RANK", 0));
  g_rank = env_rank;
  mx::distributed::Group group = [&] {
    JoinWatchdog watchdog(f.connect_timeout, env_rank, expected_size());
    try {
      return mx::distributed::init(f.backend != "any", f.backend);
    } catch (const std::exception& e) {
      if (const std::string missing = missing_mpi_library(f.backend); !missing.empty())
        throw InputError(fmt::format("rank {}: could not join the job over the '{}' backend: {}", env_rank, f.backend, missing));
      throw Error(fmt::format("rank {}: could not join the job over the '{}' backend: {} (check that every rank was "
                              "started and that the hostfile addresses are reachable)", env_rank, f.backend, e.what()));
    }
  }();
  g_rank = group.rank();
  g_size = group.size();
  return group;
}

std::vector<std::pair<int, int>> stage_ranges(const StageFlags& f, const std::string& model_dir,
                                              const ModelConfig& c, int size) {
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
    const Plan p = make_plan(c, costs_from_checkpoint(Checkpoint(model_dir), c), nodes, req);
    for (const auto& s : p.stages) ranges.emplace_back(s.first, s.last);
  }
  if (static_cast<int>(ranges.size()) != size)
    throw InputError(fmt::format("{} stages are given but the job has {} ranks", ranges.size(), size));
  return ranges;
}

PeerLost peer_lost(const std::exception& e, const StageLink& link) {
  return PeerLost(fmt::format("[rank {}] error: lost the connection to {} ({}); it has probably exited or its machine "
                              "is unreachable", link.rank(), lost_peer(link.rank(), link.size(), link.waiting_on()),
                              e.what()));
}

std::string for_rank(const std::string& path, int rank) {
  std::string p = path;
  const auto at = p.find("{rank}");
  if (at != std::string::npos) p.replace(at, 6, std::to_string(rank));
  return p;
}

}  // namespace k2::cli
