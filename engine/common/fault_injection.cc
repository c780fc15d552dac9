#include "engine/common/fault_injection.h"

#include <atomic>
#include <mutex>
#include <map>
#include <string>
#include <utility>

namespace longsana::engine::fault_injection {
namespace {

std::atomic<bool> g_any_armed{false};

std::mutex& Mu() {
  static std::mutex mu;
  return mu;
}

// (point, session) -> uses left; -1: every time.
std::map<std::pair<std::string, uint64_t>, int, std::less<>>& Points() {
  static auto* points = new std::map<std::pair<std::string, uint64_t>, int, std::less<>>();
  return *points;
}

}  // namespace

void FailSession(std::string_view point, uint64_t session_id, int times) {
  std::lock_guard lock(Mu());
  Points()[{std::string(point), session_id}] = times;
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
  auto it = Points().find(std::pair<std::string, uint64_t>(std::string(point), session_id));
  if (it == Points().end() || it->second == 0) return false;
  if (it->second > 0) --it->second;
  return true;
}

}  // namespace longsana::engine::fault_injection
