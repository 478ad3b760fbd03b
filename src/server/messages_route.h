// The Anthropic Messages routes of `k2mlx serve` (POST /v1/messages, /v1/messages/count_tokens): the
// HTTP side of anthropic_messages.h, with errors in Anthropic's shape. Registered by HttpServer.
#pragma once

#include <atomic>
#include <exception>

#include <nlohmann/json.hpp>

#include "server/completion_service.h"

namespace httplib {
class Server;
}

namespace k2 {

// status and Anthropic error body for an exception thrown while handling a request.
std::pair<int, nlohmann::ordered_json> anthropic_error_for(std::exception_ptr error);

void add_messages_routes(httplib::Server& server, CompletionService& service, bool log_requests,
                         const std::atomic<bool>& stopping);

}  // namespace k2
