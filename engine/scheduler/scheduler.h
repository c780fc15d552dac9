// Admission and step planning, as plain data (no LibTorch, no threads): the runner calls it
// under its lock and executes the StepPlan it returns. Policies:
//  - Admission: a session needs a slot of `slot_bytes` (its DiT state + VAE decoder cache +
//    caption, computed before anything is allocated); it is admitted while fewer than
//    max_sessions run and the slots fit the memory budget, else queued (bounded queue,
//    ordered by priority then arrival; the head is never skipped, so no starvation).
//  - Time budget: a real-time (paced) session must also fit the compute budget. Each
//    running real-time session has a load: the fraction of real time its blocks take to
//    make (per-block compute seconds / block duration), measured by the runner. A new one
//    is admitted only while the loads plus its estimate stay within realtime_utilization;
//    its estimate is utilization / realtime_capacity when a capacity is configured, else
//    the measured load per unit of cost (tokens x steps) of what runs, times its cost. With
//    nothing measured yet one real-time session is admitted at a time, until its first
//    block is measured (a burst is not admitted blind). Sessions paced "as fast as
//    possible" need no budget: they get what the real-time ones leave.
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
  // Time budget for real-time sessions: the most of the device's time they may need
  // together (0: no time budget), and how many of them fit (0: measure their loads).
  double realtime_utilization = 0.9;
  int realtime_capacity = 0;
};

struct SessionTicket {
  uint64_t id = 0;
  int priority = 0;
  int64_t slot_bytes = 0;
  bool realtime = false;  // paced to a viewer: needs the time budget
  double cost = 1;        // relative compute per block (tokens x steps)
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
  // How many more sessions of `slot_bytes` would be admitted right now: slots, memory and,
  // for real-time sessions of `cost`, the time budget.
  int Admissible(int64_t slot_bytes, bool realtime = false, double cost = 1) const;
  // A running session's measured load (see the time budget above).
  void SetLoad(uint64_t id, double load);
  // The time budget's state: loads of the running real-time sessions, and a new real-time
  // session's estimated load at `cost`.
  double RealtimeLoad() const;
  double EstimateLoad(double cost) const;
  // Whether the queue head waits only for the time budget (slots and memory would fit).
  bool HeadWaitsForTime() const;
  const SchedulerLimits& limits() const { return limits_; }
  // Before any session is submitted (e.g. once the device's free memory is known).
  void set_memory_budget(int64_t bytes) { limits_.memory_budget_bytes = bytes; }

 private:
  bool Fits(const SessionTicket& ticket) const;
  bool FitsSlots(int64_t slot_bytes) const;
  bool FitsTime(const SessionTicket& ticket) const;

  struct Running {
    SessionTicket ticket;
    double load = -1;  // measured; < 0 until the runner has measured it
  };

  SchedulerLimits limits_;
  std::map<uint64_t, Running> running_;
  std::deque<SessionTicket> queue_;
  int64_t bytes_in_use_ = 0;
};

}  // namespace longsana::engine
