// The self-contained chat page served at GET / (HTML, CSS and JavaScript in one document, no external
// assets): streams answers from /v1/chat/completions, keeps the conversation, shows tokens per second.
#pragma once

namespace k2 {

const char* chat_page_html();

}  // namespace k2
