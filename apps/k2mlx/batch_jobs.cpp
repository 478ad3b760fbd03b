// Batch files: JSON-lines parsing with per-line errors, the admission loop around the Scheduler, and the
// JSON-lines results.
#include "batch_jobs.h"

#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "engine/scheduler.h"
#include "prompt_input.h"

namespace k2::cli {

namespace {

template <class T>
T field(const nlohmann::json& j, const char* key, T fallback, const std::string& where) {
  if (!j.contains(key)) return fallback;
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw InputError(fmt::format("{}: \"{}\" has the wrong type ({})", where, key, j.at(key).dump()));
  }
}

}  // namespace

std::vector<BatchItem> read_batch(const std::string& path, const BatchItem& defaults, const TextModel* text) {
  std::istringstream in(read_input(path, "--batch"));
  std::vector<BatchItem> items;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("--batch {} line {}", path, number);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(fmt::format("{}: not valid JSON ({})", where, e.what()));
    }
    if (!j.is_object()) throw InputError(fmt::format("{}: expected a JSON object", where));
    BatchItem item = defaults;
    GenerationJob& job = item.job;
    if (j.contains("ids")) {
      job.prompt = field<std::vector<int>>(j, "ids", {}, where);
    } else if (j.contains("prompt")) {
      if (!text) throw InputError(fmt::format("{}: \"prompt\" needs the model's tokenizer", where));
      job.prompt = text->tokenizer->encode(field<std::string>(j, "prompt", "", where), /*allow_special=*/false);
    } else {
      throw InputError(fmt::format("{}: needs \"ids\" or \"prompt\"", where));
    }
    job.max_tokens = field(j, "max_tokens", job.max_tokens, where);
    job.sampling.temperature = field(j, "temperature", job.sampling.temperature, where);
    job.sampling.top_k = field(j, "top_k", job.sampling.top_k, where);
    job.sampling.top_p = field(j, "top_p", job.sampling.top_p, where);
    job.sampling.min_p = field(j, "min_p", job.sampling.min_p, where);
    job.sampling.seed = field(j, "seed", job.sampling.seed, where);
    job.stop_tokens = field(j, "stop_tokens", job.stop_tokens, where);
    item.cancel_after = field(j, "cancel_after", item.cancel_after, where);
    items.push_back(std::move(item));
  }
  if (items.empty()) throw InputError(fmt::format("--batch {}: no jobs in the file", path));
  return items;
}

std::vector<JobResult> run_batch(ModelStep& step, int parallel, std::vector<BatchItem> items, int step_tokens) {
  std::vector<JobResult> results(items.size());
  Scheduler scheduler(step, parallel, step_tokens);
  size_t next = 0;
  while (next < items.size() || !scheduler.idle()) {
    while (next < items.size() && scheduler.has_room()) {
      const size_t i = next++;
      GenerationJob job = std::move(items[i].job);
      job.on_done = [&results, i](const JobResult& r) { results[i] = r; };
      if (items[i].cancel_after >= 0)
        job.on_token = [count = 0, limit = items[i].cancel_after](int) mutable { return ++count < limit; };
      scheduler.add(std::move(job), std::make_shared<JobHandle>());
    }
    if (!scheduler.idle()) scheduler.step();
  }
  return results;
}

void write_batch(const std::string& path, const std::vector<JobResult>& results) {
  std::ofstream out(path);
  if (!out) throw InputError(fmt::format("{}: cannot open for writing", path));
  for (const JobResult& r : results) {
    nlohmann::json j;
    if (r.error) {
      try {
        std::rethrow_exception(r.error);
      } catch (const std::exception& e) {
        j["error"] = e.what();
      }
    } else {
      j = {{"tokens", r.tokens},
           {"finish_reason", r.finish_reason},
           {"prompt_tokens", r.prompt_tokens},
           {"cached_tokens", r.cached_tokens},
           {"first_token_seconds", r.first_token_seconds},
           {"decode_seconds", r.decode_seconds}};
    }
    out << j.dump() << "\n";
  }
}

}  // namespace k2::cli
