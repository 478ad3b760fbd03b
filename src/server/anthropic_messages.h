// The Anthropic Messages API (POST /v1/messages, /v1/messages/count_tokens) as a translation: request
// bodies become the chat ApiRequest the OpenAI routes use, and the answer (OutputDelta updates) becomes
// a message object or the documented server-sent event sequence. Wire format only; no I/O.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "server/completion_service.h"
#include "server/openai_request.h"

namespace k2 {

// body: the raw HTTP body. count_tokens: the count_tokens endpoint (max_tokens not required). Throws
// ApiError (400) naming the field for malformed requests and for blocks the server cannot render
// (images, documents, server tools).
ApiRequest parse_messages_request(const std::string& body, bool count_tokens = false);

// "end_turn", "max_tokens", "stop_sequence" or "tool_use" for a finish reason of the completion service.
std::string anthropic_stop_reason(const std::string& finish_reason, const std::string& matched_stop);

nlohmann::ordered_json anthropic_usage_json(const UsageCounts& u);

// The whole (non-streamed) message: thinking, text and tool_use blocks in that order.
nlohmann::ordered_json anthropic_message_json(const std::string& id, const std::string& model, const OutputDelta& answer,
                                              const std::string& finish_reason, const std::string& matched_stop,
                                              const UsageCounts& u);

// {"type": "error", "error": {"type": <from the status>, "message": ...}}
nlohmann::ordered_json anthropic_error_json(int status, const std::string& message);

// The streamed events of one message, as text/event-stream frames ("event: NAME\ndata: JSON\n\n").
class AnthropicEventStream {
 public:
  AnthropicEventStream(std::string id, std::string model) : id_(std::move(id)), model_(std::move(model)) {}
  std::string start(int input_tokens);  // message_start (and a ping)
  // content_block_start / _delta / _stop events for one update; a new block opens whenever the kind of
  // output changes (thinking -> text -> tool_use) or another tool call begins.
  std::string update(const OutputDelta& d);
  // Closes the open block; message_delta (stop_reason, usage) and message_stop.
  std::string finish(const std::string& finish_reason, const std::string& matched_stop, const UsageCounts& u);
  static std::string error_event(int status, const std::string& message);

 private:
  enum class Block { None, Thinking, Text, Tool };
  std::string open(Block kind, nlohmann::ordered_json content_block);
  std::string close();
  std::string id_, model_;
  Block block_ = Block::None;
  int index_ = -1;      // index of the open (or last) content block
  int tool_call_ = -1;  // the answer's tool-call index the open tool_use block shows
};

}  // namespace k2
