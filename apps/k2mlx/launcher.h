// `k2mlx launch`'s supervisor: starts the ranks of a multi-process job (locally, or over ssh for remote hosts)
// with MLX's ring environment (MLX_RANK, MLX_HOSTFILE) and supervises them: when one rank dies the others are
// stopped and the lost rank is named. Command-line code (processes, signals, exit codes), not the library.
#pragma once

#include <string>
#include <vector>

#include "pipeline/hostfile.h"

namespace k2::cli {

// Exit status of a rank that stops because a neighbour went away (not the first failure).
inline constexpr int kExitPeerLost = 4;

struct LaunchOptions {
  std::vector<HostEntry> hosts;   // one per rank, in rank order
  int starting_port = 32323;      // rank r listens on starting_port + r (unless its entry fixes a port)
  std::string program;            // the executable every rank runs (same path on every host)
  std::vector<std::string> args;  // its arguments
  std::string remote_cwd;         // remote ranks cd here first ("" = the launcher's working directory)
  double finish_timeout = 30.0;   // after one rank ends cleanly, the others must end within this many seconds
  bool verbose = false;           // print each rank's command line and set MLX_RING_VERBOSE
};

// Runs the job to completion. Returns 0 when every rank exits 0; otherwise prints which rank failed
// and how, stops the others (SIGTERM, then SIGKILL after 5 s) and returns that rank's exit code (or 1).
// SIGINT / SIGTERM to this process while it runs stop every rank and return 128 + the signal.
int launch(const LaunchOptions& options);

// The shell command a remote rank runs through ssh (exposed for tests and --dry-run).
std::string remote_command(const LaunchOptions& options, int rank, const std::string& ring_json);

// POSIX shell single-quoting.
std::string shell_quote(const std::string& s);

}  // namespace k2::cli
