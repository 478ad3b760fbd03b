// Whether the client of an HTTP request has gone away, found from the request's socket endpoints
// (cpp-httplib 0.11 does not expose the socket to handlers). Used to cancel generation promptly.
#pragma once

#include <atomic>
#include <functional>
#include <string>

namespace k2 {

// The numeric host and port of a socket's peer (peer = true) or of its own end, as cpp-httplib writes
// them into Request::remote_addr / local_addr. False when the socket has no such address.
bool socket_endpoint(int fd, bool peer, std::string& host, int& port);

class ConnectionProbe {
 public:
  ConnectionProbe(std::string local_addr, int local_port, std::string remote_addr, int remote_port);
  // True once the peer has closed or reset the connection. When the socket cannot be found it
  // answers false (never cancels a request by mistake).
  bool peer_closed();

 private:
  bool matches(int fd) const;
  bool lost_peer_on_our_end(int fd) const;  // a socket on our local endpoint whose peer reset the connection
  std::string local_addr_, remote_addr_;
  int local_port_, remote_port_;
  int fd_ = -1;
  bool searched_ = false;  // one scan of the descriptor table per request
};

// The one disconnect check every response follows (server/generation_feed.h): the request's peer closed the
// connection, or the server is stopping (`stopping` must outlive the check).
std::function<bool()> client_gone_check(std::string local_addr, int local_port, std::string remote_addr, int remote_port,
                                        const std::atomic<bool>& stopping);

}  // namespace k2
