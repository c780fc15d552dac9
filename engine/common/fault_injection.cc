#include "engine/common/fault_injection.h"

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <utility>

namespace longsana::engine::fault_injection {
namespace {

std::atomic<bool> g_any_armed{false};

std::mutex& Mu() {
  static std::mutex mu;
  return mu;
}

std::set<std::pair<std::string, uint64_t>, std::less<>>& Points() {
  static auto* points = new std::set<std::pair<std::string, uint64_t>, std::less<>>();
  return *points;
}

}  // namespace

void FailSession(std::string_view point, uint64_t session_id) {
  std::lock_guard lock(Mu());
  Points().emplace(std::string(point), session_id);
  g_any_armed.store(true, std::memory_order_release);
}

void Reset() {
  std::lock_guard lock(Mu());
  Points().clear();
  g_any_armed.store(false, std::memory_order_release);
}

bool Armed(std::string_view point, uint64_t session_id) {
  if (!g_any_armed.load(std::memory_order_relaxed)) return false;
  std::lock_guard lock(Mu());
  return Points().count(std::pair<std::string, uint64_t>(std::string(point), session_id)) > 0;
}

}  // namespace longsana::engine::fault_injection
