// The generation loop: prefill, then sample / decode until a stop token or the token limit, with the
// next step computed while the current token is handed to the caller (double buffering).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "engine/session.h"

namespace k2 {

struct GenerateOptions {
  int max_tokens = 256;
  PrefillChunking prefill;  // how the prompt is cut into chunks (default: sized to memory)
  std::vector<int> stop_tokens;  // generation ends when one is sampled (it is not emitted)
  // Ids the session already holds before `prompt` (a reused prefix): they seed the repetition-penalty
  // window together with the prompt, as if the whole sequence had been passed.
  std::vector<int> history;
};

struct GenerationStats {
  std::vector<int> tokens;       // generated ids (without the stop token)
  std::string finish_reason;     // "stop", "length" or "cancelled"
  int stop_token = -1;           // the stop id that ended generation (finish_reason "stop")
  int prompt_tokens = 0;
  double prefill_seconds = 0.0;  // until the first token is known
  double decode_seconds = 0.0;   // from the first token to the end
  size_t peak_memory = 0;        // bytes, as MLX reports
  double prefill_tps() const { return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0.0; }
  double decode_tps() const {
    return decode_seconds > 0 && tokens.size() > 1 ? (tokens.size() - 1) / decode_seconds : 0.0;
  }
};

// on_token returns false to cancel. Throws InputError for bad prompts or parameters.
GenerationStats generate(Session& session, const std::vector<int>& prompt, Sampler& sampler,
                         const GenerateOptions& options, const std::function<bool(int)>& on_token);

}  // namespace k2
