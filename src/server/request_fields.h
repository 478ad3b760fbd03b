// The two helpers every request parser (openai_request.cpp, anthropic_messages.cpp) reads a JSON body with:
// refuse with a 400 naming the parameter, and look up a field that is present and not null.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "server/api_error.h"

namespace k2::request_fields {

[[noreturn]] inline void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param, "invalid_request_error");
}

// A present, non-null field, or nullptr.
inline const nlohmann::ordered_json* field(const nlohmann::ordered_json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

}  // namespace k2::request_fields
