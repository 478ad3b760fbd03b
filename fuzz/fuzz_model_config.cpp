// libFuzzer target: config.json as the model loader reads it (model/config.h). Invalid JSON is refused
// by the JSON parser (the loader turns that into an InputError); valid JSON is accepted or refused with
// an InputError, never a JSON type or range error; an accepted config has usable derived values.
#include <cmath>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "fuzz_support.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(k2::fuzz::as_string(data, size));
  } catch (const nlohmann::json::parse_error&) {
    return 0;
  }
  try {
    const k2::ModelConfig c = k2::parse_model_config(j, "fuzz/config.json");
    k2::fuzz::check(c.vocab_size > 0 && c.hidden_size > 0 && c.num_hidden_layers > 0, "positive sizes");
    k2::fuzz::check(std::isfinite(c.softmax_scale()), "finite softmax scale");
    for (int l = 0; l < c.num_hidden_layers && l < 4096; ++l) (void)c.is_moe_layer(l);
    (void)c.q_head_dim();
  } catch (const k2::InputError&) {
  }
  return 0;
}
