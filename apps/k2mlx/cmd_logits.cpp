// `k2mlx logits`: next-token logits for fixed ids, written as float32 .npy — the interface for
// checking k2mlx against any other implementation. Alternative execution paths (chunked prefill,
// token-by-token decode, a two-stage layer split) must produce the same numbers.
#include <chrono>
#include <memory>

#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "engine/session.h"
#include "io/npy.h"
#include "memory_stats.h"
#include "mlx/mlx.h"
#include "prefill_flags.h"
#include "prompt_input.h"

namespace k2::cli {
namespace mx = mlx::core;

namespace {

struct LogitsFlags {
  ModelFlags model;
  std::string ids, ids_file;
  std::string out;
  bool all_positions = false;
  PrefillFlags prefill;
  bool decode_steps = false;
  int split_at = -1;
  bool stats = false;
};

// Stage A holds the embedding and layers [0, k); stage B layers [k, n), the norm and lm_head.
mx::array split_logits(const LogitsFlags& f, const std::vector<int>& ids) {
  LoadOptions base = f.model.load_options();
  const ModelConfig config = load_model_config(f.model.model_dir);
  if (f.split_at <= 0 || f.split_at >= config.num_hidden_layers)
    throw InputError(fmt::format("--split-at {} must be between 1 and {}", f.split_at, config.num_hidden_layers - 1));
  LoadOptions a = base, b = base;
  a.last_layer = f.split_at;
  a.load_head = false;
  b.first_layer = f.split_at;
  b.load_embedding = false;
  Model first = load_model(f.model, a);
  Model second = load_model(f.model, b);
  KvCache ca = first.make_cache(), cb = second.make_cache();
  mx::array x(ids.data(), mx::Shape{1, static_cast<int>(ids.size())}, mx::int32);
  mx::array h = first.run_layers(first.embed(x), ca);
  mx::eval(h);
  mx::array logits = second.head(second.run_layers(h, cb));  // [1, L, vocab]
  const int L = static_cast<int>(ids.size()), V = config.vocab_size;
  logits = mx::reshape(logits, {L, V});
  return f.all_positions ? logits : mx::reshape(mx::slice(logits, {L - 1, 0}, {L, V}), {V});
}

mx::array session_logits(const LogitsFlags& f, const std::vector<int>& ids) {
  Model model = load_model(f.model, f.model.load_options());
  // From here on the peak is the run's (the weights are active memory, so they count); the load's own
  // transient buffers (a bfloat16 read before its float32 cast) are not part of the prefill prediction.
  mx::reset_peak_memory();
  Session session(model);
  if (!f.decode_steps) return session.prefill(ids, f.prefill.chunking(), f.all_positions);
  std::vector<mx::array> rows;
  rows.push_back(session.prefill({ids.front()}));
  for (size_t i = 1; i < ids.size(); ++i) {
    mx::eval(rows.back());
    rows.push_back(session.decode_step(ids[i]));
  }
  return f.all_positions ? mx::stack(rows, 0) : rows.back();
}

}  // namespace

Command add_logits(CLI::App& app) {
  auto f = std::make_shared<LogitsFlags>();
  CLI::App* cmd = app.add_subcommand("logits", "Write next-token logits for given token ids to a float32 .npy file");
  f->model.add_to(*cmd);
  auto* ids = cmd->add_option("--ids", f->ids, "Token ids, e.g. 1,2,3");
  auto* ids_file = cmd->add_option("--ids-file", f->ids_file,
                                   "Token ids from a file ('-' = stdin): comma- or whitespace-separated, or a JSON array");
  ids->excludes(ids_file);
  ids_file->excludes(ids);
  cmd->add_option("--out,-o", f->out, "Output .npy path: shape [vocab], or [n_ids, vocab] with --all-positions")
      ->required();
  cmd->add_flag("--all-positions", f->all_positions, "Write the logits of every position, not just the last");
  f->prefill.add_to(*cmd);
  cmd->add_flag("--decode-steps", f->decode_steps, "Feed the ids one at a time through the KV cache (decode path)");
  cmd->add_option("--split-at", f->split_at,
                  "Load layers [0,K) and [K,n) as two separately loaded stages and run them in turn");
  cmd->add_flag("--stats", f->stats,
                "Print a 'stats:' line on stderr: seconds (load and run), MLX's peak memory after loading, the "
                "predicted peak (as `inspect --context N` prints it), max RSS, the prefill chunk");
  return [f]() {
    if (f->ids.empty() && f->ids_file.empty()) throw InputError("logits needs --ids or --ids-file");
    const std::vector<int> ids = ids_from(f->ids, f->ids_file);
    if (f->split_at >= 0 && (f->decode_steps || f->prefill.chunk > 0))
      throw InputError("--split-at cannot be combined with --decode-steps or --prefill-chunk");
    const auto start = std::chrono::steady_clock::now();
    mx::array logits = f->split_at >= 0 ? split_logits(*f, ids) : session_logits(*f, ids);
    mx::eval(logits);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    save_npy_float32(f->out, logits);
    if (f->stats) {
      const LoadOptions o = f->model.load_options();
      const int n = static_cast<int>(ids.size());
      print_stats_line(predict_prefill(f->model.model_dir, load_model_config(f->model.model_dir), o, n,
                                       f->prefill.chunking(), f->all_positions),
                       secs);
    }
    if (!f->model.quiet) {
      mx::array last = f->all_positions ? mx::slice(logits, {logits.shape(0) - 1, 0}, logits.shape()) : logits;
      fmt::print(stderr, "wrote {} ({} values), argmax of last position = {}\n", f->out, logits.size(),
                 mx::argmax(last).item<uint32_t>());
      if (f->split_at < 0 && !f->decode_steps) {
        const ModelConfig config = load_model_config(f->model.model_dir);
        const int n = static_cast<int>(ids.size());
        const LoadOptions o = f->model.load_options();
        fmt::print(stderr, "prefill: {} tokens in chunks of {}\n", n,
                   prefill_chunk_size(config, activations_for(o.dtype, o.cpu_kernels != nullptr), n,
                                      f->prefill.chunking()));
      }
    }
    return 0;
  };
}

}  // namespace k2::cli
