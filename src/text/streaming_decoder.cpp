// StreamingDecoder: UTF-8 holdback over token bytes (see streaming_decoder.h).
#include "text/streaming_decoder.h"

#include "text/utf8.h"

namespace k2 {

std::string StreamingDecoder::push(int id) {
  const std::string& bytes = tokenizer_.token_bytes(id);
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  pending_ += bytes;
  const std::size_t hold = utf8::incomplete_tail(pending_);
  // The held tail starts with a lead byte, so no invalid subpart of the emitted prefix reaches into
  // it: sanitizing prefix and tail separately equals sanitizing the whole.
  std::string out = utf8::sanitize(std::string_view(pending_).substr(0, pending_.size() - hold));
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StreamingDecoder::flush() {
  std::string out = utf8::sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace k2
