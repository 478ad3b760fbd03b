// Hostfiles: the launcher's list of machines (mlx.launch style, with optional memory / bandwidth for
// planning) and MLX's ring hostfile (rank-ordered lists of "ip:port") that the ranks read. Parsing is
// strict: a bad entry is reported by index with what was expected. No processes, no sockets.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "pipeline/plan.h"

namespace k2 {

struct HostEntry {
  std::string ssh;               // host to start the rank on ("" or a local name: no ssh)
  std::string ip;                // IPv4 address the ring listens on for this rank
  std::optional<int> port;       // fixed port (MLX ring format); else starting port + rank
  std::optional<NodeSpec> node;  // memory / bandwidth / usable, when the entry gives them
};

// Accepts either form:
//   [{"ssh": "m2.local", "ips": ["192.168.2.1"], "name": "m2", "memory": "192GB", "bandwidth": 800,
//     "usable": "160GB"}, ...]           (memory .. usable optional; bare numbers are GB and GB/s)
//   [["192.168.2.1:32323"], ["192.168.2.2:32323"]]   (MLX ring hostfile)
std::vector<HostEntry> parse_hostfile_json(const nlohmann::json& j, const std::string& source);
std::vector<HostEntry> read_hostfile(const std::string& path);

// n ranks on 127.0.0.1.
std::vector<HostEntry> local_hosts(int n);

// MLX ring hostfile text: [["ip:port"], ...] in rank order.
std::string ring_hostfile(const std::vector<HostEntry>& hosts, int starting_port);

// Nodes for planning; throws InputError naming the first entry without "memory".
std::vector<NodeSpec> nodes_from_hosts(const std::vector<HostEntry>& hosts);

bool is_local_host(const std::string& host);

}  // namespace k2
