// Parsing token-id lists typed by users (--ids, --ids-file): no I/O and no CLI11, so the fuzz target
// (fuzz/fuzz_id_list.cpp) links it alone.
#pragma once

#include <string>
#include <vector>

namespace k2::cli {

// Token ids from text: "1,2,3", "1 2 3", one per line, or a JSON array [1, 2, 3]. `where` names the
// source in errors ("--ids", "--ids-file ids.txt"), which also give the line and the bad element.
std::vector<int> parse_ids(const std::string& text, const std::string& where = "--ids");

}  // namespace k2::cli
