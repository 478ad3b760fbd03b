// Sampling flag registration; the ranges match SamplingParams::validate, which still guards library callers.
#include "sampling_flags.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace k2::cli {

CLI::Validator in_interval(double lo, bool lo_open, double hi, bool hi_open) {
  auto bound = [](double v) { return std::isinf(v) ? std::string(v < 0 ? "-inf" : "inf") : fmt::format("{}", v); };
  const std::string desc = fmt::format("{}{}, {}{}", lo_open ? "(" : "[", bound(lo), bound(hi), hi_open ? ")" : "]");
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double v = 0;
        size_t used = 0;
        try {
          v = std::stod(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != text.size() || text.empty()) return fmt::format("'{}' is not a number", text);
        const bool ok = std::isfinite(v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
        return ok ? std::string() : fmt::format("{} is not in {}", text, desc);
      },
      "in " + desc);
}

CLI::Validator non_negative() { return in_interval(0, false, std::numeric_limits<double>::infinity(), true); }

void add_sampling_flags(CLI::App& app, SamplingParams& p) {
  const double inf = std::numeric_limits<double>::infinity();
  app.add_option("--temp,--temperature", p.temperature, "Sampling temperature (0 = greedy)")
      ->check(in_interval(0, false, inf, true))
      ->capture_default_str();
  app.add_option("--top-k", p.top_k, "Keep the K most likely tokens (0 = off)")
      ->check(non_negative())
      ->capture_default_str();
  app.add_option("--top-p", p.top_p, "Nucleus sampling: keep the smallest set with this mass (1 = off)")
      ->check(in_interval(0, true, 1, false))
      ->capture_default_str();
  app.add_option("--min-p", p.min_p, "Drop tokens below MIN_P times the top probability (0 = off)")
      ->check(in_interval(0, false, 1, true))
      ->capture_default_str();
  app.add_option("--repetition-penalty", p.repetition_penalty,
                 "Divide positive / multiply negative logits of recent tokens by this (1 = off)")
      ->check(in_interval(0, true, inf, true))
      ->capture_default_str();
  app.add_option("--repetition-context", p.repetition_context, "How many recent tokens the repetition penalty considers")
      ->check(non_negative())
      ->capture_default_str();
  app.add_option("--seed", p.seed, "Random seed for sampling (in a pipeline the last rank samples)")
      ->check(non_negative())  // CLI11 would wrap -1 around to 2^64 - 1
      ->capture_default_str();
}

}  // namespace k2::cli
