// A least-recently-used cache bounded both in entries and in bytes (the caller states each
// value's size). Used for encoded prompts: load tests and prompt switches repeat prompts.
// Torch-free and header-only.
//
// Not thread-safe: the owner serialises access (TextEncoder holds a mutex around it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>
#include <utility>

namespace longsana::engine {

struct LruCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;  // entries dropped to respect a bound (not replacements)
  uint64_t rejected = 0;   // values larger than max_bytes, never stored
  size_t entries = 0;
  size_t bytes = 0;
};

template <typename Key, typename Value, typename Hash = std::hash<Key>>
class LruCache {
 public:
  // max_entries == 0 or max_bytes == 0 disables caching (every Get misses, Put stores
  // nothing).
  LruCache(size_t max_entries, size_t max_bytes)
      : max_entries_(max_entries), max_bytes_(max_bytes) {}

  // The value under `key` (a copy), marking it most recently used; counts a hit or a miss.
  std::optional<Value> Get(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) {
      ++stats_.misses;
      return std::nullopt;
    }
    order_.splice(order_.begin(), order_, it->second);
    ++stats_.hits;
    return it->second->value;
  }

  // Inserts or replaces `key` as the most recently used entry, then evicts least recently
  // used entries until both bounds hold. A value with bytes > max_bytes is not stored
  // (returns false; an existing entry under `key` is dropped so no stale value survives).
  bool Put(const Key& key, Value value, size_t bytes) {
    Erase(key);
    if (max_entries_ == 0 || bytes > max_bytes_) {
      ++stats_.rejected;
      return false;
    }
    order_.push_front(Node{key, std::move(value), bytes});
    index_.emplace(key, order_.begin());
    stats_.bytes += bytes;
    while (order_.size() > max_entries_ || stats_.bytes > max_bytes_) {
      const Node& last = order_.back();
      stats_.bytes -= last.bytes;
      index_.erase(last.key);
      order_.pop_back();
      ++stats_.evictions;
    }
    stats_.entries = order_.size();
    return true;
  }

  bool Contains(const Key& key) const { return index_.count(key) != 0; }

  // Removes `key` if present; returns whether it was.
  bool Erase(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    stats_.bytes -= it->second->bytes;
    order_.erase(it->second);
    index_.erase(it);
    stats_.entries = order_.size();
    return true;
  }

  void Clear() {
    order_.clear();
    index_.clear();
    stats_.entries = 0;
    stats_.bytes = 0;
  }

  const LruCacheStats& stats() const { return stats_; }
  size_t max_entries() const { return max_entries_; }
  size_t max_bytes() const { return max_bytes_; }

 private:
  struct Node {
    Key key;
    Value value;
    size_t bytes;
  };
  using List = std::list<Node>;

  size_t max_entries_;
  size_t max_bytes_;
  List order_;  // most recently used first
  std::unordered_map<Key, typename List::iterator, Hash> index_;
  LruCacheStats stats_;
};

}  // namespace longsana::engine
