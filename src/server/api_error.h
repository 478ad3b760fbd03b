// ApiError: a request the server refuses, with the HTTP status and OpenAI error fields to report.
// Thrown by request parsing and validation; http_server.cpp turns it (and every other error) into JSON.
#pragma once

#include <string>

#include "core/error.h"

namespace k2 {

class ApiError : public InputError {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string code = {})
      : InputError(message), status_(status), param_(std::move(param)), code_(std::move(code)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }

 private:
  int status_;
  std::string param_, code_;
};

}  // namespace k2
