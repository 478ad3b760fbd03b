// `k2mlx inspect`: what a model folder holds and what running it costs, from headers only:
// config summary, quantization per tensor kind (and disagreements with config.json), bytes per
// layer, and the predicted memory of a layer range at a context length.
#include <chrono>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "mlx/mlx.h"
#include "model/footprint.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "memory_stats.h"
#include "prefill_flags.h"

namespace k2::cli {
namespace mx = mlx::core;

namespace {

struct InspectFlags {
  std::string model_dir;
  std::string layers;
  int context = 40000;
  PrefillFlags prefill;           // the defaults of logits / generate
  std::string dtype = "auto";     // as logits / generate: float32 on the CPU backend
  std::string kernels = "auto";
  bool per_layer = false;
  bool load = false;
  int load_threads = 0;
  bool progress = false;
};

}  // namespace

Command add_inspect(CLI::App& app) {
  auto f = std::make_shared<InspectFlags>();
  CLI::App* cmd = app.add_subcommand("inspect", "Describe a model folder and predict the memory a layer range needs");
  cmd->add_option("--model,-m", f->model_dir, "Model folder")->required();
  cmd->add_option("--layers", f->layers, "Layer range FIRST:LAST to predict memory for (default: all)");
  cmd->add_option("--context", f->context,
                  "Prompt length (tokens) whose prefill peak memory is predicted (as logits / generate run it)")
      ->capture_default_str();
  f->prefill.add_to(*cmd);
  cmd->add_option("--dtype", f->dtype,
                  "Activation / KV-cache dtype assumed: auto (as the commands: float32 on the CPU backend, bfloat16 "
                  "on a GPU), bfloat16, float16 or float32")
      ->capture_default_str();
  cmd->add_option("--kernels", f->kernels,
                  "Kernels assumed, as the commands' --kernels: auto or k2 (the blocked CPU attention for float32), "
                  "mlx (MLX's SDPA)")
      ->capture_default_str();
  cmd->add_flag("--per-layer", f->per_layer, "List the bytes of every layer");
  cmd->add_flag("--load", f->load,
                "Also load the --layers range (embedding only if it starts at 0, lm_head only if it ends at the "
                "last layer) and report the memory it really takes");
  cmd->add_option("--load-threads", f->load_threads,
                  "With --load: threads that read the checkpoint (default: the cores, 2 to 8; 1: read each tensor "
                  "as it is bound)");
  cmd->add_flag("--progress", f->progress,
                "With --load: show the loading progress (GB read, GB/s) on stderr even when it is not a terminal");
  return [f]() {
    if (f->context < 1) throw InputError(fmt::format("--context must be positive, got {}", f->context));
    const mx::Dtype dt = resolve_dtype(f->dtype);
    const ModelConfig c = load_model_config(f->model_dir);
    const Checkpoint ck(f->model_dir);
    const Footprint fp = measure_checkpoint(ck, c);
    const int n = c.num_hidden_layers;
    auto [first, last] = f->layers.empty() ? std::pair{0, n} : parse_range(f->layers, n);

    fmt::print("model: {} ({}), {} layers ({} dense, {} MoE), hidden {}, {} heads, vocab {}\n", f->model_dir,
               c.model_type, n, [&] { int d = 0; for (int i = 0; i < n; ++i) d += !c.is_moe_layer(i); return d; }(),
               [&] { int m = 0; for (int i = 0; i < n; ++i) m += c.is_moe_layer(i); return m; }(), c.hidden_size,
               c.num_attention_heads, c.vocab_size);
    fmt::print("MLA: q_lora_rank {}, kv_lora_rank {}, qk_nope {} + rope {}, v {}, softmax scale {:.6f}\n",
               c.q_lora_rank, c.kv_lora_rank, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim, c.softmax_scale());
    if (c.n_routed_experts)
      fmt::print("MoE: {} routed experts (top {}, groups {}/{}), {} shared, width {}, scaling {}\n", c.n_routed_experts,
                 c.num_experts_per_tok, c.topk_group, c.n_group, c.n_shared_experts, c.moe_intermediate_size,
                 c.routed_scaling_factor);
    if (c.rope_scaling)
      fmt::print("RoPE: theta {}, YaRN factor {}, beta {}/{}, original context {}\n", c.rope_theta,
                 c.rope_scaling->factor, c.rope_scaling->beta_fast, c.rope_scaling->beta_slow,
                 c.rope_scaling->original_max_position_embeddings);
    fmt::print("declared quantization: {}{}\n",
               c.quantization.global ? fmt::format("{}-bit group {} {}", c.quantization.global->bits,
                                                   c.quantization.global->group_size, c.quantization.global->mode)
                                     : (c.quantization.quant_method.empty() ? "none" : c.quantization.quant_method),
               c.quantization.overrides.empty() ? "" : fmt::format(", {} per-module overrides", c.quantization.overrides.size()));
    fmt::print("stop tokens: {}\n", fmt::format("{}", fmt::join(c.eos_token_ids, ", ")));
    fmt::print("\n{} tensors in {} file(s)\n", ck.names().size(), ck.shard_count());
    fmt::print("{:<36} {:>12}  {}\n", "tensor kind", "bytes", "formats found");
    for (const auto& k : fp.kinds) {
      std::string formats;
      for (const auto& [name, count] : k.formats) formats += fmt::format("{}{} x{}", formats.empty() ? "" : "; ", name, count);
      fmt::print("{:<36} {:>12}  {}\n", k.kind, format_bytes(static_cast<double>(k.bytes)), formats);
      if (k.disagreements)
        fmt::print("{:<36} {:>12}  {} disagree with config.json, e.g. {}\n", "", "", k.disagreements,
                   k.example_disagreement);
    }
    if (f->per_layer)
      for (int i = 0; i < n; ++i)
        fmt::print("layer {:>3} ({}): {}\n", i, c.is_moe_layer(i) ? "MoE  " : "dense", format_bytes(static_cast<double>(fp.layer_bytes[i])));
    fmt::print("\nweights: {} in total (embedding {}, norm + lm_head {}", format_bytes(static_cast<double>(fp.total())),
               format_bytes(static_cast<double>(fp.embed_bytes)), format_bytes(static_cast<double>(fp.head_bytes)));
    if (fp.ignored_bytes) fmt::print(", plus {} unused, e.g. an MTP layer", format_bytes(static_cast<double>(fp.ignored_bytes)));
    fmt::print(")\n");

    if (!fp.unreadable.empty()) {
      std::map<std::string, int> errors;  // one line per distinct problem (usually one per shard)
      for (const auto& [name, where] : fp.unreadable) errors[where.second]++;
      fmt::print(stderr, "\n{} tensor(s) cannot be read:\n", fp.unreadable.size());
      for (const auto& [msg, count] : errors) fmt::print(stderr, "  {} ({} tensor(s))\n", msg, count);
    }
    const bool range_broken = fp.range_unreadable(first, last, first == 0, last == n);
    const size_t w = fp.range_bytes(first, last, first == 0, last == n);
    if (f->kernels != "auto" && f->kernels != "k2" && f->kernels != "mlx")
      throw InputError(fmt::format("--kernels '{}' is not one of auto, k2, mlx", f->kernels));
    LoadOptions stage;  // layers [first, last) at dt, the embedding and head where the range holds them
    stage.dtype = dt;
    stage.first_layer = first;
    stage.last_layer = last;
    stage.load_embedding = first == 0;
    stage.load_head = last == n;
    LoadOptions assumed = stage;
    if (f->kernels != "mlx") assumed.cpu_kernels = std::make_shared<kernels::CpuKernels>(1);
    const PrefillPeak peak = predict_prefill(f->model_dir, c, assumed, f->context, f->prefill.chunking(), false);
    const std::string dname = dt == mx::float32 ? "float32" : dt == mx::bfloat16 ? "bfloat16" : "float16";
    fmt::print("KV cache: {} per token for all {} layers at {} ({} B)\n",
               format_bytes(static_cast<double>(kv_bytes_per_token(c, n, mx::size_of(dt)))), n, dname,
               kv_bytes_per_token(c, n, mx::size_of(dt)));
    fmt::print("layers [{}, {}): checkpoint bytes {}, bound at {} {}\n", first, last,
               format_bytes(static_cast<double>(w)), dname, format_bytes(static_cast<double>(peak.weights)));
    fmt::print("prefill of {} tokens ({}, {}, chunks of {}): {}\n", f->context, dname,
               activations_for(dt, assumed.cpu_kernels != nullptr).blocked_attention ? "blocked CPU attention"
                                                                                      : "MLX SDPA",
               peak.chunk, describe_peak(peak));
    fmt::print("predicted peak memory: {} B\n", peak.total());
    if (range_broken)
      throw CheckpointError(fmt::format("layers [{}, {}) need tensors that cannot be read (see above)", first, last));
    if (f->load) {
      LoadOptions o = stage;
      o.read_threads = check_load_threads(f->load_threads);
      o.progress = load_progress_line(f->progress);
      const auto start = std::chrono::steady_clock::now();
      const size_t before = mx::get_active_memory();
      ModelWeights loaded = load_weights(ck, c, o);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (o.progress) fmt::print(stderr, "\n");
      mx::clear_cache();
      const size_t active = mx::get_active_memory() - before;
      fmt::print("loaded layers [{}, {}): checkpoint bytes {} , bound weight bytes {} , MLX active memory {} , "
                 "peak {}\n", first, last, w, loaded.nbytes(), active, mx::get_peak_memory());
      fmt::print("load time {:.2f} s ({:.2f} GB/s)\n", secs, secs > 0 ? w / secs / 1e9 : 0.0);
    }
    return 0;
  };
}

}  // namespace k2::cli
