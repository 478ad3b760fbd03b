// Unit tests for pipeline/hostfile: both hostfile forms, every kind of bad entry reported by index, and the
// MLX ring hostfile written for the ranks.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "pipeline/hostfile.h"

namespace {
using nlohmann::json;

void expect_error(const std::string& text, const std::vector<std::string>& parts) {
  try {
    k2::parse_hostfile_json(json::parse(text), "hosts.json");
    ADD_FAILURE() << "expected InputError for " << text;
  } catch (const k2::InputError& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << " lacks " << p;
  }
}

TEST(Hostfile, LauncherFormatWithPlanningFields) {
  const auto hosts = k2::parse_hostfile_json(json::parse(R"([
    {"ssh": "m2.local", "ips": ["192.168.2.1"], "name": "m2", "memory": "192GB", "bandwidth": 800, "usable": "160GB"},
    {"ssh": "m3.local", "ips": ["192.168.2.2"], "memory": 512}])"), "hosts.json");
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_EQ(hosts[0].ssh, "m2.local");
  EXPECT_EQ(hosts[1].ip, "192.168.2.2");
  const auto nodes = k2::nodes_from_hosts(hosts);
  EXPECT_EQ(nodes[0].name, "m2");
  EXPECT_DOUBLE_EQ(*nodes[0].usable_bytes, 160e9);
  EXPECT_DOUBLE_EQ(nodes[0].bandwidth, 800e9);
  EXPECT_EQ(nodes[1].name, "m3.local");
  EXPECT_DOUBLE_EQ(nodes[1].memory_bytes, 512e9);
  EXPECT_EQ(k2::ring_hostfile(hosts, 5000), R"([["192.168.2.1:5000"],["192.168.2.2:5001"]])");
}

TEST(Hostfile, MlxRingFormatKeepsPorts) {
  const auto hosts = k2::parse_hostfile_json(json::parse(R"([["127.0.0.1:7001"], ["127.0.0.1:7003"]])"), "h");
  EXPECT_EQ(k2::ring_hostfile(hosts, 5000), R"([["127.0.0.1:7001"],["127.0.0.1:7003"]])");
  EXPECT_THROW(k2::nodes_from_hosts(hosts), k2::InputError);  // no memory for planning
}

TEST(Hostfile, BadEntriesAreNamedByIndex) {
  expect_error("{}", {"non-empty JSON list"});
  expect_error("[]", {"non-empty JSON list"});
  expect_error(R"([{"ssh": "a", "ips": ["10.0.0.1"]}, {"ips": ["10.0.0.2"]}])", {"entry 1", "ssh"});
  expect_error(R"([{"ssh": "a", "ips": ["10.0.0.300"]}])", {"entry 0", "10.0.0.300", "IPv4"});
  expect_error(R"([{"ssh": "a", "ips": []}])", {"entry 0", "ips"});
  expect_error(R"([{"ssh": "remote-box"}])", {"entry 0", "remote-box", "ips"});
  expect_error(R"([{"ssh": "a", "ips": ["10.0.0.1"], "memroy": "1GB"}])", {"entry 0", "memroy"});
  expect_error(R"([{"ssh": "a", "ips": ["10.0.0.1"], "memory": "lots"}])", {"entry 0", "memory"});
  expect_error(R"([{"ssh": "a", "ips": ["10.0.0.1"], "bandwidth": 800}])", {"entry 0", "without \"memory\""});
  expect_error(R"([["127.0.0.1:0"]])", {"entry 0", "port"});
  expect_error(R"([["127.0.0.1:99999"]])", {"entry 0", "port"});
  expect_error(R"([["localhost:5000"]])", {"entry 0", "IPV4:PORT"});
  expect_error(R"([["127.0.0.1:5000", "127.0.0.1:5001"]])", {"entry 0", "one"});
  expect_error(R"([42])", {"entry 0"});
  expect_error(R"([{"ssh": "a", "ips": ["10.0.0.1"], "name": "m2", "memory": 192},
                  {"ssh": "b", "ips": ["10.0.0.2"], "name": "m2", "memory": 512}])", {"entries 0 and 1", "'m2'"});
  expect_error(R"([{"ssh": "a", "ips": ["10.0.0.1"], "memory": "-192GB"}])", {"entry 0", "negative"});
  // Two ranks on one machine without planning fields stay allowed.
  EXPECT_EQ(k2::parse_hostfile_json(json::parse(R"([{"ssh": "localhost"}, {"ssh": "localhost"}])"), "h").size(), 2u);
}

TEST(Hostfile, LocalHosts) {
  EXPECT_TRUE(k2::is_local_host("localhost"));
  EXPECT_TRUE(k2::is_local_host("127.0.0.1"));
  EXPECT_FALSE(k2::is_local_host("m3.example.invalid"));
  const auto hosts = k2::local_hosts(3);
  EXPECT_EQ(k2::ring_hostfile(hosts, 40000), R"([["127.0.0.1:40000"],["127.0.0.1:40001"],["127.0.0.1:40002"]])");
}

}  // namespace
