// Finds the server socket whose endpoints match the request (getsockname / getpeername, numeric host
// strings as cpp-httplib writes them), then peeks at it: a zero-byte read means the peer closed.
#include "server/connection_probe.h"

#include <memory>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace k2 {

bool socket_endpoint(int fd, bool peer, std::string& host, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  const int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                      : getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (rc != 0) return false;
  char h[NI_MAXHOST], s[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, h, sizeof(h), s, sizeof(s), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return false;
  host = h;
  port = std::atoi(s);
  return true;
}

ConnectionProbe::ConnectionProbe(std::string local_addr, int local_port, std::string remote_addr, int remote_port)
    : local_addr_(std::move(local_addr)), remote_addr_(std::move(remote_addr)), local_port_(local_port),
      remote_port_(remote_port) {}

bool ConnectionProbe::matches(int fd) const {
  std::string host;
  int port = 0;
  if (!socket_endpoint(fd, true, host, port) || host != remote_addr_ || port != remote_port_) return false;
  return socket_endpoint(fd, false, host, port) && port == local_port_ && (local_addr_.empty() || host == local_addr_);
}

bool ConnectionProbe::lost_peer_on_our_end(int fd) const {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 || errno != ENOTCONN) return false;
  int listening = 0;  // the listening socket has no peer either
  socklen_t size = sizeof(listening);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || listening) return false;
  std::string host;
  int port = 0;
  return socket_endpoint(fd, false, host, port) && port == local_port_ && (local_addr_.empty() || host == local_addr_);
}

bool ConnectionProbe::peer_closed() {
  if (remote_port_ <= 0) return false;
  if (fd_ >= 0 && !matches(fd_)) return true;  // our socket was closed (and its number maybe reused)
  if (fd_ < 0) {
    if (searched_) return false;
    searched_ = true;
    const long max_fd = std::min(sysconf(_SC_OPEN_MAX), 65536L);
    // A socket whose peer reset the connection has no peer address any more (getpeername: ENOTCONN), so it
    // matches nothing. Ours, were it still connected, would match; so when nothing matches but a socket on our
    // local endpoint has lost its peer, ours is that one (or closed): the client is gone.
    bool reset_socket_seen = false;
    for (int fd = 0; fd < max_fd; ++fd) {
      struct stat st {};
      if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
      if (matches(fd)) {
        fd_ = fd;
        break;
      }
      reset_socket_seen = reset_socket_seen || lost_peer_on_our_end(fd);
    }
    if (fd_ < 0) return reset_socket_seen;
  }
  char c;
  const ssize_t n = recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
  return false;
}

std::function<bool()> client_gone_check(std::string local_addr, int local_port, std::string remote_addr, int remote_port,
                                        const std::atomic<bool>& stopping) {
  auto probe = std::make_shared<ConnectionProbe>(std::move(local_addr), local_port, std::move(remote_addr), remote_port);
  return [probe, &stopping] { return stopping.load() || probe->peer_closed(); };
}

}  // namespace k2
