// Admission and step planning, as plain data (no LibTorch, no threads): the runner calls it
// under its lock and executes the StepPlan it returns. Policies:
//  - Admission: a session needs a slot of `slot_bytes` (its DiT state + VAE decoder cache +
//    caption, computed before anything is allocated); it is admitted while fewer than
//    max_sessions run and the slots fit the memory budget, else queued (bounded queue,
//    ordered by priority then arrival; the head is never skipped, so no starvation).
//  - Planning: among the sessions ready for a forward, the most urgent one (earliest
//    playback deadline — block j is due at start + j x block duration — then higher
//    priority, then older) picks the token count; the batch is filled, most urgent first,
//    with other ready sessions of the same token count, up to max_batch.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace longsana::engine {

struct SchedulerLimits {
  int max_sessions = 4;
  int64_t memory_budget_bytes = 0;  // 0: no byte limit
  int queue_size = 16;
  int max_batch = 8;
};

struct SessionTicket {
  uint64_t id = 0;
  int priority = 0;
  int64_t slot_bytes = 0;
};

// A running session that can take part in the next forward.
struct ReadySession {
  uint64_t id = 0;
  int64_t token_count = 0;  // sessions batch together only with equal token counts
  double deadline = 0.0;    // seconds (any common clock): when its current block is due
  int priority = 0;
};

struct StepPlan {
  std::vector<uint64_t> batch;  // in urgency order; empty when nothing is ready
  int64_t token_count = 0;
};

// Not thread-safe: the caller serialises access.
class Scheduler {
 public:
  explicit Scheduler(const SchedulerLimits& limits) : limits_(limits) {}

  // 0 when admitted now, else the 1-based queue position. ResourceExhausted when the queue
  // is full; InvalidArgument when the slot alone exceeds the memory budget; AlreadyExists
  // for a duplicate id.
  absl::StatusOr<int> Submit(const SessionTicket& ticket);
  // Forgets a running or queued session (finished, failed or cancelled); frees its slot.
  void Remove(uint64_t id);
  // Admits queued sessions, head first, while they fit; returns them in admission order.
  std::vector<uint64_t> AdmitFromQueue();

  StepPlan Plan(std::span<const ReadySession> ready) const;

  bool IsRunning(uint64_t id) const { return running_.count(id) != 0; }
  int QueuePosition(uint64_t id) const;  // 1-based; 0 when not queued
  std::vector<uint64_t> queue() const;   // in order
  int running() const { return static_cast<int>(running_.size()); }
  int queued() const { return static_cast<int>(queue_.size()); }
  int64_t bytes_in_use() const { return bytes_in_use_; }
  // How many more sessions of `slot_bytes` would be admitted right now.
  int Admissible(int64_t slot_bytes) const;
  const SchedulerLimits& limits() const { return limits_; }
  // Before any session is submitted (e.g. once the device's free memory is known).
  void set_memory_budget(int64_t bytes) { limits_.memory_budget_bytes = bytes; }

 private:
  bool Fits(int64_t slot_bytes) const;

  SchedulerLimits limits_;
  std::map<uint64_t, SessionTicket> running_;
  std::deque<SessionTicket> queue_;
  int64_t bytes_in_use_ = 0;
};

}  // namespace longsana::engine
