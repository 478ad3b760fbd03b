// Hostfile parsing and the MLX ring hostfile writer.
#include "pipeline/hostfile.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace k2 {

namespace {

bool is_ipv4(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

double size_field(const nlohmann::json& v, const std::string& where) {
  if (v.is_number()) {
    if (v.get<double>() <= 0) throw InputError(fmt::format("{}: must be positive", where));
    return v.get<double>() * 1e9;
  }
  if (v.is_string()) {
    try {
      return parse_size(v.get<std::string>());
    } catch (const InputError& e) {
      throw InputError(fmt::format("{}: {}", where, e.what()));
    }
  }
  throw InputError(fmt::format("{}: expected a size like \"192GB\" or a number of GB", where));
}

HostEntry parse_ring_entry(const nlohmann::json& e, const std::string& where) {
  if (!e.is_array() || e.empty() || !e[0].is_string())
    throw InputError(fmt::format("{}: expected a list of \"ip:port\" strings", where));
  if (e.size() > 1)
    throw InputError(fmt::format("{}: k2mlx uses one connection per rank; give one \"ip:port\"", where));
  const std::string s = e[0].get<std::string>();
  const auto colon = s.rfind(':');
  HostEntry h;
  h.ip = colon == std::string::npos ? s : s.substr(0, colon);
  if (colon == std::string::npos || !is_ipv4(h.ip))
    throw InputError(fmt::format("{}: '{}' is not IPV4:PORT (the ring backend is IPv4 only)", where, s));
  try {
    size_t used = 0;
    const int port = std::stoi(s.substr(colon + 1), &used);
    if (used == s.size() - colon - 1 && port > 0 && port < 65536) h.port = port;
  } catch (const std::exception&) {
  }
  if (!h.port) throw InputError(fmt::format("{}: '{}' has no valid port (1-65535)", where, s));
  h.ssh = h.ip;
  return h;
}

HostEntry parse_host_entry(const nlohmann::json& e, const std::string& where) {
  if (!e.is_object()) throw InputError(fmt::format("{}: expected an object like {{\"ssh\": HOST, \"ips\": [IP]}}", where));
  for (auto it = e.begin(); it != e.end(); ++it) {
    static const char* known[] = {"ssh", "ips", "name", "memory", "bandwidth", "usable"};
    if (std::find_if(std::begin(known), std::end(known), [&](const char* k) { return it.key() == k; }) == std::end(known))
      throw InputError(fmt::format("{}: unknown key \"{}\" (known: ssh, ips, name, memory, bandwidth, usable)", where, it.key()));
  }
  HostEntry h;
  if (!e.contains("ssh") || !e["ssh"].is_string() || e["ssh"].get<std::string>().empty())
    throw InputError(fmt::format("{}: \"ssh\" must be a non-empty host name", where));
  h.ssh = e["ssh"].get<std::string>();
  if (e.contains("ips")) {
    const auto& ips = e["ips"];
    if (!ips.is_array() || ips.empty() || !ips[0].is_string())
      throw InputError(fmt::format("{}: \"ips\" must be a non-empty list of IPv4 addresses", where));
    h.ip = ips[0].get<std::string>();
    if (!is_ipv4(h.ip))
      throw InputError(fmt::format("{}: \"ips\" entry '{}' is not an IPv4 address (the ring backend is IPv4 only)", where, h.ip));
  } else if (is_ipv4(h.ssh)) {
    h.ip = h.ssh;
  } else if (is_local_host(h.ssh)) {
    h.ip = "127.0.0.1";
  } else {
    throw InputError(fmt::format("{}: host '{}' needs \"ips\": [the IPv4 address the other machines reach it on]", where, h.ssh));
  }
  if (e.contains("memory")) {
    NodeSpec n;
    n.name = e.contains("name") && e["name"].is_string() ? e["name"].get<std::string>() : h.ssh;
    n.memory_bytes = size_field(e["memory"], where + " \"memory\"");
    if (e.contains("bandwidth")) {
      const auto& b = e["bandwidth"];
      if (b.is_number() && b.get<double>() > 0) n.bandwidth = b.get<double>() * 1e9;
      else if (b.is_string()) n.bandwidth = parse_bandwidth(b.get<std::string>());
      else throw InputError(fmt::format("{} \"bandwidth\": expected GB/s as a positive number", where));
    }
    if (e.contains("usable")) n.usable_bytes = size_field(e["usable"], where + " \"usable\"");
    h.node = n;
  } else if (e.contains("bandwidth") || e.contains("usable")) {
    throw InputError(fmt::format("{}: \"bandwidth\"/\"usable\" given without \"memory\"", where));
  }
  return h;
}

}  // namespace

bool is_local_host(const std::string& host) {
  if (host.empty() || host == "localhost" || host == "127.0.0.1") return true;
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) == 0 && host == name) return true;
  return false;
}

std::vector<HostEntry> parse_hostfile_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_array() || j.empty()) throw InputError(fmt::format("{}: expected a non-empty JSON list of hosts", source));
  std::vector<HostEntry> hosts;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string where = fmt::format("{}: entry {} (rank {})", source, i, i);
    hosts.push_back(j[i].is_array() ? parse_ring_entry(j[i], where) : parse_host_entry(j[i], where));
    // Two ranks may run on one machine, but two planning nodes with one name cannot be told apart.
    for (size_t k = 0; k < i && hosts[i].node; ++k)
      if (hosts[k].node && hosts[k].node->name == hosts[i].node->name)
        throw InputError(fmt::format("{}: entries {} and {} are both named '{}'; give each machine its own \"name\"", source, k,
                                     i, hosts[i].node->name));
  }
  return hosts;
}

std::vector<HostEntry> read_hostfile(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw InputError(fmt::format("hostfile {} cannot be opened", path));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("hostfile {} is not valid JSON: {}", path, e.what()));
  }
  return parse_hostfile_json(j, "hostfile " + path);
}

std::vector<HostEntry> local_hosts(int n) {
  std::vector<HostEntry> hosts(n);
  for (auto& h : hosts) h.ssh = "127.0.0.1", h.ip = "127.0.0.1";
  return hosts;
}

std::string ring_hostfile(const std::vector<HostEntry>& hosts, int starting_port) {
  nlohmann::json j = nlohmann::json::array();
  for (size_t r = 0; r < hosts.size(); ++r)
    j.push_back({fmt::format("{}:{}", hosts[r].ip, hosts[r].port ? *hosts[r].port : starting_port + static_cast<int>(r))});
  return j.dump();
}

std::vector<NodeSpec> nodes_from_hosts(const std::vector<HostEntry>& hosts) {
  std::vector<NodeSpec> nodes;
  for (size_t i = 0; i < hosts.size(); ++i) {
    if (!hosts[i].node)
      throw InputError(fmt::format("hostfile entry {} ({}) has no \"memory\"; planning needs each machine's RAM", i, hosts[i].ssh));
    nodes.push_back(*hosts[i].node);
  }
  return nodes;
}

}  // namespace k2
