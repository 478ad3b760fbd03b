// Latent cache storage: capacity grows by kStep positions with slice_update into a larger buffer,
// so a decode step writes one row instead of concatenating the whole history.
#include "model/kv_cache.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"
#include "mlx/mlx.h"

namespace k2 {
namespace mx = mlx::core;

namespace {

mx::array grow(const std::optional<mx::array>& old, const mx::array& like, int used, int needed) {
  const int capacity = ((needed + LayerCache::kStep - 1) / LayerCache::kStep) * LayerCache::kStep;
  mx::Shape shape = like.shape();
  shape[2] = capacity;
  mx::array fresh = mx::zeros(shape, like.dtype());
  if (old && used > 0) {
    mx::Shape stop = old->shape();
    stop[2] = used;
    mx::array kept = mx::slice(*old, mx::Shape{0, 0, 0, 0}, stop);
    fresh = mx::slice_update(fresh, kept, mx::Shape{0, 0, 0, 0}, stop);
  }
  return fresh;
}

}  // namespace

std::pair<mx::array, mx::array> LayerCache::update_and_fetch(const mx::array& latent, const mx::array& k_pe) {
  const int L = latent.shape(2);
  const int end = offset_ + L;
  if (!latent_ || latent_->shape(2) < end || latent_->dtype() != latent.dtype()) {
    const int needed = std::max(end, reserve_);
    latent_ = grow(latent_, latent, offset_, needed);
    k_pe_ = grow(k_pe_, k_pe, offset_, needed);
  }
  mx::Shape start{0, 0, offset_, 0};
  mx::Shape stop_l{latent.shape(0), 1, end, latent.shape(3)};
  mx::Shape stop_k{k_pe.shape(0), 1, end, k_pe.shape(3)};
  latent_ = mx::slice_update(*latent_, latent, start, stop_l);
  k_pe_ = mx::slice_update(*k_pe_, k_pe, start, stop_k);
  offset_ = end;
  return {mx::slice(*latent_, mx::Shape{0, 0, 0, 0}, stop_l), mx::slice(*k_pe_, mx::Shape{0, 0, 0, 0}, stop_k)};
}

void LayerCache::trim_to(int length) {
  if (length < 0 || length > offset_)
    throw InputError(fmt::format("cannot trim a cache of {} positions to {}", offset_, length));
  offset_ = length;
}

size_t LayerCache::nbytes() const {
  return (latent_ ? latent_->nbytes() : 0) + (k_pe_ ? k_pe_->nbytes() : 0);
}

std::vector<mx::array> LayerCache::state() const {
  std::vector<mx::array> out;
  if (latent_) out.push_back(*latent_);
  if (k_pe_) out.push_back(*k_pe_);
  return out;
}

KvCache::KvCache(int first_layer, int last_layer)
    : first_(first_layer), last_(last_layer), layers_(std::max(0, last_layer - first_layer)) {}

LayerCache& KvCache::layer(int index) {
  if (index < first_ || index >= last_)
    throw Error(fmt::format("layer {} is outside this cache's range [{}, {})", index, first_, last_));
  return layers_[index - first_];
}

int KvCache::offset() const { return layers_.empty() ? 0 : layers_.front().offset(); }

void KvCache::reserve(int positions) {
  for (auto& l : layers_) l.reserve(positions);
}

void KvCache::trim_to(int length) {
  for (auto& l : layers_) l.trim_to(length);
}

size_t KvCache::nbytes() const {
  size_t n = 0;
  for (const auto& l : layers_) n += l.nbytes();
  return n;
}

std::vector<mx::array> KvCache::state() const {
  std::vector<mx::array> out;
  for (const auto& l : layers_)
    for (auto& a : l.state()) out.push_back(a);
  return out;
}

}  // namespace k2
