// Process supervision with fork/exec and a waitpid polling loop. Each rank runs in its own process
// group so that stopping a rank also stops anything it started (e.g. the ssh session of a remote rank).
#include "launcher.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"

namespace k2::cli {

namespace {

// Set by SIGINT / SIGTERM while the launcher waits; a signal handler can only reach a global (which is why
// this lives in the command line and not in the library).
volatile sig_atomic_t g_stop_signal = 0;
void on_signal(int sig) { g_stop_signal = sig; }

struct Rank {
  pid_t pid = -1;
  bool running = false;
  int status = 0;
};

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return fmt::format("was killed by signal {} ({})", sig, strsignal(sig));
  }
  return "ended abnormally";
}

bool clean_exit(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

void stop_all(std::vector<Rank>& ranks) {
  for (auto& r : ranks)
    if (r.running) kill(-r.pid, SIGTERM);
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    bool any = false;
    for (auto& r : ranks) {
      if (!r.running) continue;
      int st = 0;
      if (waitpid(r.pid, &st, WNOHANG) == r.pid) r.running = false, r.status = st;
      else any = true;
    }
    if (!any) return;
    if (std::chrono::steady_clock::now() - start > std::chrono::seconds(5)) {
      for (auto& r : ranks)
        if (r.running) kill(-r.pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string remote_command(const LaunchOptions& o, int rank, const std::string& ring_json) {
  std::string cwd = o.remote_cwd;
  if (cwd.empty()) {
    char buf[4096];
    if (getcwd(buf, sizeof(buf))) cwd = buf;
  }
  std::string cmd = fmt::format("cd {} && f=$(mktemp) && printf '%s' {} > \"$f\" && MLX_RANK={} MLX_HOSTFILE=\"$f\" {}exec {}",
                                shell_quote(cwd), shell_quote(ring_json), rank, o.verbose ? "MLX_RING_VERBOSE=1 " : "",
                                shell_quote(o.program));
  for (const auto& a : o.args) cmd += " " + shell_quote(a);
  return cmd;
}

namespace {

// The ring hostfile every local rank reads, in a temporary file removed when the job ends.
class RingFile {
 public:
  explicit RingFile(const std::string& json) {
    const int fd = mkstemps(path_, 5);
    if (fd < 0) throw Error(fmt::format("cannot create a temporary hostfile: {}", std::strerror(errno)));
    const bool ok = write(fd, json.data(), json.size()) == static_cast<ssize_t>(json.size());
    close(fd);
    if (!ok) {
      unlink(path_);
      throw Error("cannot write the temporary hostfile");
    }
  }
  ~RingFile() { unlink(path_); }
  RingFile(const RingFile&) = delete;
  RingFile& operator=(const RingFile&) = delete;
  const char* path() const { return path_; }

 private:
  char path_[32] = "/tmp/k2mlx-ring-XXXXXX.json";
};

// Forks rank r (exec'd in its own process group); returns its pid.
pid_t start_rank(const LaunchOptions& o, int r, const std::string& ring_json, const char* ring_path) {
  const int n = static_cast<int>(o.hosts.size());
  std::vector<std::string> argv;
  if (is_local_host(o.hosts[r].ssh)) {
    argv.push_back(o.program);
    argv.insert(argv.end(), o.args.begin(), o.args.end());
  } else {
    argv = {"ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", o.hosts[r].ssh, remote_command(o, r, ring_json)};
  }
  if (o.verbose) {
    std::string line;
    for (const auto& a : argv) line += (line.empty() ? "" : " ") + shell_quote(a);
    fmt::print(stderr, "[launch] rank {} on {}: MLX_RANK={} MLX_HOSTFILE={} {}\n", r, o.hosts[r].ssh, r, ring_path, line);
  }
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return pid;
  if (pid == 0) {
    setpgid(0, 0);
    if (n > 1) {  // MLX's ring cannot form a ring of one (rank 0 would connect to itself)
      setenv("MLX_RANK", std::to_string(r).c_str(), 1);
      setenv("MLX_HOSTFILE", ring_path, 1);
    }
    setenv("MLX_WORLD_SIZE", std::to_string(n).c_str(), 1);
    if (o.verbose) setenv("MLX_RING_VERBOSE", "1", 1);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    execvp(cargv[0], cargv.data());
    fmt::print(stderr, "error: rank {}: cannot start {}: {}\n", r, argv[0], std::strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid);
  return pid;
}

// Rank `seen` failed. A failure usually takes its neighbours down within milliseconds: gathers the exits
// for a moment, names the rank that failed first (the others exit with kExitPeerLost), stops the rest and
// returns the job's exit code.
int report_failure(const LaunchOptions& o, std::vector<Rank>& ranks, int seen) {
  const int n = static_cast<int>(ranks.size());
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (std::chrono::steady_clock::now() < until) {
    for (auto& rk : ranks) {
      int st = 0;
      if (rk.running && waitpid(rk.pid, &st, WNOHANG) == rk.pid) rk.running = false, rk.status = st;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto secondary = [](int st) { return WIFEXITED(st) && WEXITSTATUS(st) == kExitPeerLost; };
  int culprit = seen;
  for (int r = 0; r < n; ++r)
    if (!ranks[r].running && !clean_exit(ranks[r].status) && !secondary(ranks[r].status)) {
      culprit = r;
      break;
    }
  const int st = ranks[culprit].status;
  const bool remote = !is_local_host(o.hosts[culprit].ssh);
  std::string also;
  for (int r = 0; r < n; ++r)
    if (r != culprit && !ranks[r].running && !clean_exit(ranks[r].status))
      also += fmt::format("{}rank {} {}", also.empty() ? " (then " : ", ", r, describe_status(ranks[r].status));
  if (!also.empty()) also += ")";
  fmt::print(stderr, "error: lost rank {} of {} (host {}): it {}{}{}; stopping the other ranks\n", culprit, n,
             o.hosts[culprit].ssh, describe_status(st),
             remote && WIFEXITED(st) && WEXITSTATUS(st) == 255 ? " (ssh could not reach the host)" : "", also);
  stop_all(ranks);
  return WIFEXITED(st) && WEXITSTATUS(st) != 0 ? WEXITSTATUS(st) : 1;
}

// Waits for every rank: the first failure, a signal to the launcher, or ranks still running finish_timeout
// after one ended cleanly end the job.
int supervise(const LaunchOptions& o, std::vector<Rank>& ranks) {
  const int n = static_cast<int>(ranks.size());
  std::optional<std::chrono::steady_clock::time_point> first_done;
  int first_done_rank = -1;
  while (true) {
    if (g_stop_signal) {
      fmt::print(stderr, "error: launch interrupted by signal {}; stopping all ranks\n", static_cast<int>(g_stop_signal));
      stop_all(ranks);
      return 128 + g_stop_signal;
    }
    bool any_running = false;
    for (int r = 0; r < n; ++r) {
      if (!ranks[r].running) continue;
      int st = 0;
      if (waitpid(ranks[r].pid, &st, WNOHANG) != ranks[r].pid) {
        any_running = true;
        continue;
      }
      ranks[r].running = false;
      ranks[r].status = st;
      if (!clean_exit(st)) return report_failure(o, ranks, r);
      if (!first_done) first_done = std::chrono::steady_clock::now(), first_done_rank = r;
    }
    if (!any_running) return 0;
    if (first_done && std::chrono::steady_clock::now() - *first_done > std::chrono::duration<double>(o.finish_timeout)) {
      std::string left;
      for (int r = 0; r < n; ++r)
        if (ranks[r].running) left += fmt::format("{}{}", left.empty() ? "" : ", ", r);
      fmt::print(stderr, "error: rank(s) {} still running {:.0f} s after rank {} finished; stopping them\n", left,
                 o.finish_timeout, first_done_rank);
      stop_all(ranks);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

int launch(const LaunchOptions& o) {
  const int n = static_cast<int>(o.hosts.size());
  if (n < 1) throw InputError("launch needs at least one rank");
  if (o.starting_port < 1 || o.starting_port + n > 65535)
    throw InputError(fmt::format("--starting-port {} leaves no room for {} ranks", o.starting_port, n));
  const std::string ring_json = ring_hostfile(o.hosts, o.starting_port);
  const RingFile ring(ring_json);

  g_stop_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  std::vector<Rank> ranks(n);
  for (int r = 0; r < n; ++r) {
    const pid_t pid = start_rank(o, r, ring_json, ring.path());
    if (pid < 0) {
      const int err = errno;
      stop_all(ranks);
      throw Error(fmt::format("fork failed for rank {}: {}", r, std::strerror(err)));
    }
    ranks[r].pid = pid;
    ranks[r].running = true;
  }
  return supervise(o, ranks);
}

}  // namespace k2::cli
