// `k2mlx launch`: starts every rank of a multi-process job — N ranks on this machine (-n) or one per
// entry of a hostfile (over ssh for remote hosts) — running `k2mlx <args>` with MLX's ring environment,
// and supervises them: a rank that dies takes the job down with a message naming it.
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#if defined(__APPLE__)
#include <mach-o/dyld.h>
#endif

#include "commands.h"
#include "core/error.h"
#include "launcher.h"
#include "pipeline/hostfile.h"

namespace k2::cli {

namespace {

struct LaunchFlags {
  int n = 0;
  std::string hostfile, program, cwd;
  int starting_port = 32323;
  double finish_timeout = 30;
  bool verbose = false, dry_run = false;
  std::vector<std::string> args;
};

std::string own_executable() {
#if defined(__APPLE__)
  char buf[4096];
  uint32_t size = sizeof(buf);
  if (_NSGetExecutablePath(buf, &size) == 0) return std::filesystem::weakly_canonical(buf).string();
#else
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) return p.string();
#endif
  throw Error("cannot find the path of the k2mlx executable; pass --program");
}

}  // namespace

Command add_launch(CLI::App& app) {
  auto f = std::make_shared<LaunchFlags>();
  CLI::App* cmd = app.add_subcommand(
      "launch", "Start a multi-rank job: `k2mlx launch -n 2 -- pipeline --model DIR --ids 1,2,3` (ring backend)");
  auto* n = cmd->add_option("-n,--ranks", f->n, "Number of ranks on this machine (127.0.0.1)");
  auto* h = cmd->add_option("--hostfile", f->hostfile,
                            "JSON list of hosts, one rank each: [{\"ssh\": HOST, \"ips\": [IPV4]}, ...] or MLX's "
                            "[[\"ip:port\"], ...]");
  n->excludes(h);
  cmd->add_option("--starting-port", f->starting_port, "Rank r listens on this port + r")->capture_default_str();
  cmd->add_option("--finish-timeout", f->finish_timeout,
                  "Seconds the other ranks get to finish once one has finished")->capture_default_str();
  cmd->add_option("--program", f->program, "Executable each rank runs (default: this k2mlx, same path on every host)");
  cmd->add_option("--cwd", f->cwd, "Working directory on remote hosts (default: the current one)");
  cmd->add_flag("--verbose,-v", f->verbose, "Print each rank's command and MLX's ring log");
  cmd->add_flag("--dry-run", f->dry_run, "Print what would run (hostfile and commands) and exit");
  cmd->add_option("args", f->args, "k2mlx arguments for every rank, after --")->required();
  return [f]() {
    LaunchOptions o;
    if (!f->hostfile.empty()) o.hosts = read_hostfile(f->hostfile);
    else if (f->n >= 1) o.hosts = local_hosts(f->n);
    else throw InputError("launch needs -n N (ranks on this machine) or --hostfile FILE");
    o.program = f->program.empty() ? own_executable() : f->program;
    o.args = f->args;
    o.starting_port = f->starting_port;
    o.finish_timeout = f->finish_timeout;
    o.remote_cwd = f->cwd;
    o.verbose = f->verbose;
    if (f->dry_run) {
      const std::string ring = ring_hostfile(o.hosts, o.starting_port);
      fmt::print("MLX_HOSTFILE contents: {}\n", ring);
      for (size_t r = 0; r < o.hosts.size(); ++r) {
        if (is_local_host(o.hosts[r].ssh)) {
          std::string line = fmt::format("MLX_RANK={} MLX_HOSTFILE=<file> {}", r, shell_quote(o.program));
          for (const auto& a : o.args) line += " " + shell_quote(a);
          fmt::print("rank {} (local): {}\n", r, line);
        } else {
          fmt::print("rank {} (ssh {}): {}\n", r, o.hosts[r].ssh, remote_command(o, static_cast<int>(r), ring));
        }
      }
      return 0;
    }
    return launch(o);
  };
}

}  // namespace k2::cli
