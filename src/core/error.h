// k2::Error and its subclasses: the only exception types k2mlx's library code throws.
// Messages name the thing, what was expected and what was found; callers map them to exit codes / HTTP.
#pragma once

#include <stdexcept>
#include <string>

namespace k2 {

// Something went wrong inside k2mlx or its dependencies (internal failure).
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The user's input is wrong: a file, a flag, a config value, a request. Maps to exit code 2 / HTTP 4xx.
class InputError : public Error {
 public:
  using Error::Error;
};

// A checkpoint file or folder is malformed, truncated or inconsistent with config.json.
class CheckpointError : public InputError {
 public:
  using InputError::InputError;
};

}  // namespace k2
