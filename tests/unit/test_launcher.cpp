// Unit tests for the command line's rank launcher (apps/k2mlx/launcher.h): the ssh command it builds for a
// remote rank (shell quoting), a failed rank named and the others stopped, and the environment every rank gets.
#include <gtest/gtest.h>

#include <chrono>

#include "launcher.h"
#include "pipeline/hostfile.h"

namespace {

TEST(Launcher, RemoteCommandQuotesEverything) {
  EXPECT_EQ(k2::cli::shell_quote("it's"), "'it'\\''s'");
  k2::cli::LaunchOptions o;
  o.hosts = k2::local_hosts(2);
  o.program = "/opt/k2 mlx/k2mlx";
  o.args = {"pipeline", "--model", "/models/Kimi K2", "--ids", "1,2"};
  o.remote_cwd = "/tmp";
  const std::string cmd = k2::cli::remote_command(o, 1, R"([["10.0.0.1:1"],["10.0.0.2:2"]])");
  EXPECT_NE(cmd.find("MLX_RANK=1"), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("exec '/opt/k2 mlx/k2mlx' 'pipeline'"), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("'/models/Kimi K2'"), std::string::npos) << cmd;
  EXPECT_NE(cmd.find(R"('[["10.0.0.1:1"],["10.0.0.2:2"]]')"), std::string::npos) << cmd;
}

TEST(Launcher, FailedRankIsReportedAndOthersStopped) {
  // Rank 1 fails at once; rank 0 would sleep for a minute unless the launcher stops it.
  k2::cli::LaunchOptions o;
  o.hosts = k2::local_hosts(2);
  o.program = "/bin/sh";
  o.args = {"-c", "if [ \"$MLX_RANK\" = 1 ]; then exit 7; else sleep 60; fi"};
  const auto start = std::chrono::steady_clock::now();
  testing::internal::CaptureStderr();
  const int rc = k2::cli::launch(o);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 7);
  EXPECT_NE(err.find("lost rank 1 of 2"), std::string::npos) << err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(Launcher, AllRanksSeeTheirEnvironment) {
  k2::cli::LaunchOptions o;
  o.hosts = k2::local_hosts(3);
  o.program = "/bin/sh";
  o.args = {"-c", "test \"$MLX_WORLD_SIZE\" = 3 && test -s \"$MLX_HOSTFILE\" && grep -q 127.0.0.1:4100$MLX_RANK \"$MLX_HOSTFILE\""};
  o.starting_port = 41000;
  EXPECT_EQ(k2::cli::launch(o), 0);
}

}  // namespace
