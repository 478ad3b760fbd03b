// Shared CLI plumbing: flag definitions, parsing of layer ranges, and the progress bar.
#include "common.h"

#include <chrono>
#include <memory>
#include <cstdio>
#include <unistd.h>

#include <fmt/format.h>

#include "core/error.h"
#include "mlx/mlx.h"

namespace k2::cli {
namespace mx = mlx::core;

void ModelFlags::add_to(CLI::App& app) {
  app.add_option("--model,-m", model_dir, "Model folder: config.json + .safetensors (MLX, FP8, INT4 or bf16)")
      ->required();
  app.add_option("--dtype", dtype,
                 "Compute dtype for activations and unquantized weights: auto (bfloat16 on a GPU, float32 on "
                 "the CPU backend, where it is faster), float32, bfloat16, float16")
      ->capture_default_str();
  app.add_option("--fp8-requantize", fp8_requantize,
                 "For the original FP8 release: re-quantize every FP8 matrix at load to MLX affine BITS[:GROUP] "
                 "(e.g. 4:64) instead of dequantizing it to --dtype");
  app.add_option("--kernels", kernels,
                 "Quantized matmuls on the CPU: auto or k2 (k2mlx's multithreaded SIMD kernels), mlx (MLX's own); "
                 "GPU streams always use MLX's")
      ->capture_default_str();
  app.add_option("--threads", threads, "Threads for k2mlx's CPU kernels (default: the physical cores)");
  app.add_option("--load-threads", load_threads,
                 "Threads that read the checkpoint while loading (default: the cores, 2 to 8; 1: read each "
                 "tensor as it is bound)");
  app.add_flag("--quiet,-q", quiet, "No progress bar or statistics on stderr");
  app.add_flag("--progress", progress, "Show the loading progress (GB read, GB/s) on stderr even when it is not a "
                                       "terminal");
}

int check_load_threads(int n) {
  if (n < 0 || n > 64) throw InputError(fmt::format("--load-threads {} is not between 0 and 64", n));
  return n;
}

std::function<void(size_t, size_t)> load_progress_line(bool forced) {
  const bool tty = isatty(fileno(stderr));
  if (!tty && !forced) return nullptr;
  struct State {
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now(), last{};
  };
  auto st = std::make_shared<State>();
  return [st, tty](size_t done, size_t total) {
    const auto now = std::chrono::steady_clock::now();
    if (done != total && now - st->last < (tty ? std::chrono::milliseconds(100) : std::chrono::seconds(1))) return;
    st->last = now;
    const double frac = total ? static_cast<double>(done) / total : 1.0;
    const int width = 30, filled = static_cast<int>(frac * width);
    const double secs = std::chrono::duration<double>(now - st->start).count();
    fmt::print(stderr, "{}loading [{}{}] {:3.0f}% {:.2f} / {:.2f} GB  {:.2f} GB/s {}", tty ? "\r" : "",
               std::string(filled, '#'), std::string(width - filled, ' '), frac * 100, done / 1e9, total / 1e9,
               secs > 0 ? done / secs / 1e9 : 0.0, tty ? "" : "\n");
  };
}

mx::Dtype resolve_dtype(const std::string& name) {
  if (name == "auto") return mx::is_available(mx::Device::gpu) ? mx::bfloat16 : mx::float32;
  if (name == "float32") return mx::float32;
  if (name == "bfloat16") return mx::bfloat16;
  if (name == "float16") return mx::float16;
  throw InputError(fmt::format("--dtype '{}' is not one of auto, float32, bfloat16, float16", name));
}

LoadOptions ModelFlags::load_options() const {
  LoadOptions o;
  o.dtype = resolve_dtype(dtype);
  if (kernels != "auto" && kernels != "k2" && kernels != "mlx")
    throw InputError(fmt::format("--kernels '{}' is not one of auto, k2, mlx", kernels));
  if (threads < 0 || threads > 1024) throw InputError(fmt::format("--threads {} is not between 1 and 1024", threads));
  o.read_threads = check_load_threads(load_threads);
  // The kernels object is cheap when no CPU stream uses it, so auto attaches it everywhere: GPU streams
  // still take MLX's path per call (WeightTensor::uses_cpu_kernels).
  if (kernels != "mlx") o.cpu_kernels = std::make_shared<k2::kernels::CpuKernels>(threads);
  if (!fp8_requantize.empty()) {
    QuantSpec q;
    const auto colon = fp8_requantize.find(':');
    try {
      q.bits = std::stoi(fp8_requantize.substr(0, colon));
      if (colon != std::string::npos) q.group_size = std::stoi(fp8_requantize.substr(colon + 1));
    } catch (const std::exception&) {
      throw InputError(fmt::format("--fp8-requantize '{}' is not BITS[:GROUP]", fp8_requantize));
    }
    if (!(q.bits == 2 || q.bits == 3 || q.bits == 4 || q.bits == 5 || q.bits == 6 || q.bits == 8) ||
        !(q.group_size == 32 || q.group_size == 64 || q.group_size == 128))
      throw InputError(fmt::format("--fp8-requantize {}: bits must be 2,3,4,5,6,8 and group 32,64,128", fp8_requantize));
    o.fp8_requantize = q;
  }
  return o;
}

std::pair<int, int> parse_range(const std::string& text, int n) {
  const auto colon = text.find(':');
  if (colon == std::string::npos) throw InputError(fmt::format("layer range '{}' is not FIRST:LAST", text));
  auto part = [&](const std::string& s, int fallback) {
    if (s.empty()) return fallback;
    try {
      size_t used = 0;
      int v = std::stoi(s, &used);
      if (used == s.size()) return v;
    } catch (const std::exception&) {
    }
    throw InputError(fmt::format("layer range '{}': '{}' is not a number", text, s));
  };
  const int a = part(text.substr(0, colon), 0), b = part(text.substr(colon + 1), n);
  if (a < 0 || b > n || a >= b)
    throw InputError(fmt::format("layer range {}:{} is not within the model's {} layers", a, b, n));
  return {a, b};
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.2f} {}", bytes, units[u]);
}

Model load_model(const ModelFlags& flags, LoadOptions options) {
  const auto start = std::chrono::steady_clock::now();
  if (!flags.quiet || flags.progress) options.progress = load_progress_line(flags.progress);
  const bool bar = static_cast<bool>(options.progress) && isatty(fileno(stderr));
  options.warn = [&](const std::string& msg) {
    if (!flags.quiet) fmt::print(stderr, "{}note: {}\n", bar ? "\n" : "", msg);
  };
  Model m = Model::load(flags.model_dir, options);
  if (bar) fmt::print(stderr, "\n");
  if (!flags.quiet)
    fmt::print(stderr, "loaded {} layers [{}, {}) in {:.1f} s, {} of weights\n", m.last_layer() - m.first_layer(),
               m.first_layer(), m.last_layer(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
               format_bytes(static_cast<double>(m.weights().nbytes())));
  return m;
}

}  // namespace k2::cli
