// Incremental detokenization for streamed generation: emits text as ids arrive, holding back the
// bytes of a UTF-8 character that is split across tokens until it is complete, so no emitted chunk
// ever contains a broken sequence. Concatenated output equals Tokenizer::decode of all ids.
#pragma once

#include <string>

#include "text/tokenizer.h"

namespace k2 {

class StreamingDecoder {
 public:
  // skip_special: special tokens produce no text (as Tokenizer::decode(ids, true)).
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special = false)
      : tokenizer_(tokenizer), skip_special_(skip_special) {}

  // Adds one id; returns the text that became complete (possibly empty). Invalid byte sequences
  // that can no longer become valid are emitted as U+FFFD.
  std::string push(int id);

  // Ends the stream: returns any held-back bytes, an incomplete character becoming U+FFFD.
  std::string flush();

  // Bytes currently held back (0..3).
  std::size_t pending() const { return pending_.size(); }

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace k2
