// What every rank of a multi-process job (`k2mlx pipeline`, `k2mlx serve` under `k2mlx launch`) does
// before and around its work: stage flags, joining the group with a timeout, choosing its layer range,
// and naming a lost neighbour (crash handler, PeerLost → exit status 4). Owns no protocol.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/error.h"
#include "mlx/distributed/distributed.h"
#include "model/model.h"
#include "pipeline/stage_link.h"

namespace k2::cli {

struct StageFlags {
  std::string stages, plan, backend = "any";
  double connect_timeout = 60;
  void add_to(CLI::App& app);
  // True when this process was started as one rank of a job (launcher / MPI environment) or
  // --backend, --stages or --plan ask for one.
  bool wanted() const;
};

// A neighbour went away: reported with its own exit code (kExitPeerLost) so that a launcher can tell the
// rank that failed first from the ranks that merely lost it.
struct PeerLost : Error {
  using Error::Error;
};

// "rank X" for the peer a rank waited on (-1: one of its two neighbours).
std::string lost_peer(int rank, int size, int peer);

// Ignores SIGPIPE and installs a terminate handler that names the lost peer (MLX's ring backend throws
// on its own thread when a peer goes away, which ends the process through std::terminate).
void install_crash_handler();
// The link whose waiting_on() the crash handler reports (nullptr: none).
void set_crash_link(const StageLink* link);

// Joins the job over flags.backend, giving up after flags.connect_timeout seconds (exit status 3).
mlx::core::distributed::Group join_group(const StageFlags& flags);

// Layer range of every rank: --stages, --plan, or balanced by checkpoint bytes.
std::vector<std::pair<int, int>> stage_ranges(const StageFlags& flags, const std::string& model_dir,
                                              const ModelConfig& config, int size);

// A PeerLost naming the peer `link` waited on, for an exception out of a distributed operation.
PeerLost peer_lost(const std::exception& e, const StageLink& link);

// Runs body(); any error but InputError becomes PeerLost (in a multi-rank group).
template <class F>
auto guarded(const StageLink& link, F&& body) {
  try {
    return body();
  } catch (const InputError&) {
    throw;
  } catch (const PeerLost&) {
    throw;
  } catch (const std::exception& e) {
    if (link.size() == 1) throw;
    throw peer_lost(e, link);
  }
}

// Replaces "{rank}" in a path.
std::string for_rank(const std::string& path, int rank);

}  // namespace k2::cli
