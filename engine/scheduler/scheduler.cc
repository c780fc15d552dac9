#include "engine/scheduler/scheduler.h"

#include <algorithm>
#include <cmath>

#include "engine/common/str_util.h"

namespace longsana::engine {

bool Scheduler::FitsSlots(int64_t slot_bytes) const {
  if (static_cast<int>(running_.size()) >= limits_.max_sessions) return false;
  return limits_.memory_budget_bytes <= 0 ||
         bytes_in_use_ + slot_bytes <= limits_.memory_budget_bytes;
}

bool Scheduler::FitsTime(const SessionTicket& ticket) const {
  if (!ticket.realtime || limits_.realtime_utilization <= 0) return true;
  const double estimate = EstimateLoad(ticket.cost);
  if (estimate <= 0) {
    // Nothing measured yet: admit one real-time session at a time until its first block
    // gives a measurement, so that a burst is not admitted blind.
    for (const auto& [id, r] : running_) {
      if (r.ticket.realtime && r.load < 0) return false;
    }
    return true;
  }
  return RealtimeLoad() + estimate <= limits_.realtime_utilization + 1e-9;
}

bool Scheduler::Fits(const SessionTicket& ticket) const {
  return FitsSlots(ticket.slot_bytes) && FitsTime(ticket);
}

void Scheduler::SetLoad(uint64_t id, double load) {
  auto it = running_.find(id);
  if (it != running_.end()) it->second.load = load;
}

double Scheduler::EstimateLoad(double cost) const {
  if (limits_.realtime_capacity > 0) {
    return limits_.realtime_utilization / limits_.realtime_capacity;
  }
  double load = 0, measured_cost = 0;
  for (const auto& [id, r] : running_) {
    if (r.load < 0) continue;
    load += r.load;
    measured_cost += r.ticket.cost;
  }
  return measured_cost > 0 ? load / measured_cost * cost : 0;
}

double Scheduler::RealtimeLoad() const {
  double total = 0;
  for (const auto& [id, r] : running_) {
    if (!r.ticket.realtime) continue;
    // Configured capacity: every stream counts the same. Measured: its load, or (not
    // measured yet) the estimate it was admitted on.
    total += limits_.realtime_capacity > 0 || r.load < 0 ? EstimateLoad(r.ticket.cost) : r.load;
  }
  return total;
}

bool Scheduler::HeadWaitsForTime() const {
  return !queue_.empty() && FitsSlots(queue_.front().slot_bytes) && !FitsTime(queue_.front());
}

absl::StatusOr<int> Scheduler::Submit(const SessionTicket& ticket) {
  if (running_.count(ticket.id) != 0 || QueuePosition(ticket.id) != 0) {
    return absl::AlreadyExistsError(StrCat("session ", ticket.id, " already submitted"));
  }
  if (limits_.memory_budget_bytes > 0 && ticket.slot_bytes > limits_.memory_budget_bytes) {
    return absl::InvalidArgumentError(
        StrCat("the session needs ", ticket.slot_bytes, " bytes of state, more than the whole "
               "memory budget of ", limits_.memory_budget_bytes,
               " bytes: choose a smaller width/height"));
  }
  if (queue_.empty() && Fits(ticket)) {
    running_[ticket.id] = Running{ticket};
    bytes_in_use_ += ticket.slot_bytes;
    return 0;
  }
  if (static_cast<int>(queue_.size()) >= limits_.queue_size) {
    return absl::ResourceExhaustedError(
        StrCat("server at capacity: ", running_.size(), " sessions running and ", queue_.size(),
               " queued (queue size ", limits_.queue_size, "); retry later"));
  }
  // Higher priority first, FIFO within a priority.
  auto pos = std::find_if(queue_.begin(), queue_.end(), [&](const SessionTicket& t) {
    return t.priority < ticket.priority;
  });
  pos = queue_.insert(pos, ticket);
  return static_cast<int>(pos - queue_.begin()) + 1;
}

void Scheduler::Remove(uint64_t id) {
  auto it = running_.find(id);
  if (it != running_.end()) {
    bytes_in_use_ -= it->second.ticket.slot_bytes;
    running_.erase(it);
    return;
  }
  queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                              [id](const SessionTicket& t) { return t.id == id; }),
               queue_.end());
}

std::vector<uint64_t> Scheduler::AdmitFromQueue() {
  std::vector<uint64_t> admitted;
  while (!queue_.empty() && Fits(queue_.front())) {
    const SessionTicket t = queue_.front();
    queue_.pop_front();
    running_[t.id] = Running{t};
    bytes_in_use_ += t.slot_bytes;
    admitted.push_back(t.id);
  }
  return admitted;
}

int Scheduler::QueuePosition(uint64_t id) const {
  for (size_t i = 0; i < queue_.size(); ++i) {
    if (queue_[i].id == id) return static_cast<int>(i) + 1;
  }
  return 0;
}

std::vector<uint64_t> Scheduler::queue() const {
  std::vector<uint64_t> ids;
  for (const auto& t : queue_) ids.push_back(t.id);
  return ids;
}

int Scheduler::Admissible(int64_t slot_bytes, bool realtime, double cost) const {
  if (!queue_.empty()) return 0;
  int n = limits_.max_sessions - static_cast<int>(running_.size());
  if (limits_.memory_budget_bytes > 0 && slot_bytes > 0) {
    const int64_t fit = (limits_.memory_budget_bytes - bytes_in_use_) / slot_bytes;
    n = static_cast<int>(std::min<int64_t>(n, fit));
  }
  if (realtime && limits_.realtime_utilization > 0) {
    const double each = EstimateLoad(cost);
    if (each <= 0 && !FitsTime(SessionTicket{0, 0, slot_bytes, true, cost})) n = 0;
    if (each > 0) {
      const double room = limits_.realtime_utilization - RealtimeLoad() + 1e-9;
      n = std::min(n, static_cast<int>(std::floor(std::max(0.0, room) / each)));
    }
  }
  return std::max(n, 0);
}

StepPlan Scheduler::Plan(std::span<const ReadySession> ready) const {
  std::vector<const ReadySession*> order;
  for (const auto& r : ready) order.push_back(&r);
  std::sort(order.begin(), order.end(), [](const ReadySession* a, const ReadySession* b) {
    if (a->deadline != b->deadline) return a->deadline < b->deadline;
    if (a->priority != b->priority) return a->priority > b->priority;
    return a->id < b->id;
  });
  StepPlan plan;
  if (order.empty()) return plan;
  plan.token_count = order.front()->token_count;
  for (const ReadySession* r : order) {
    if (r->token_count != plan.token_count) continue;
    plan.batch.push_back(r->id);
    if (static_cast<int>(plan.batch.size()) >= limits_.max_batch) break;
  }
  return plan;
}

}  // namespace longsana::engine
