#include "server/session_outbox.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "server/proto_mapping.h"

namespace longsana::server {

SessionOutbox::SessionOutbox(OutboxOptions options, EventWriter* writer)
    : options_(options), writer_(writer) {}

SessionOutbox::~SessionOutbox() = default;

void SessionOutbox::Open(const engine::SessionInfo& info) {
  std::unique_lock lock(mu_);
  session_id_.store(info.id);
  v1::GenerateEvent accepted;
  *accepted.mutable_accepted() = ToAccepted(info);
  queue_.push_front(std::move(accepted));
  opened_ = true;
  spdlog::info("[session {}] stream opened: {}", info.id, options_.label);
  Pump(std::move(lock));
}

void SessionOutbox::OnWriteDone(bool ok) {
  std::unique_lock lock(mu_);
  if (in_flight_ != nullptr && in_flight_->has_chunk()) {
    chunks_.fetch_sub(1);
    if (ok) {
      ++chunks_delivered_;
      bytes_delivered_ += static_cast<int64_t>(in_flight_->chunk().data().size());
    }
  }
  in_flight_.reset();
  if (!ok && !end_status_.has_value()) {
    spdlog::info("[session {}] client gone (write failed)", session_id_.load());
    DropQueuedLocked();
    end_status_ = absl::CancelledError("the client is gone");
  }
  Pump(std::move(lock));
}

void SessionOutbox::Abort(const absl::Status& status) {
  std::unique_lock lock(mu_);
  if (finish_started_) return;
  DropQueuedLocked();
  end_status_ = status;
  Pump(std::move(lock));
}

void SessionOutbox::PushCommandAck(v1::CommandAck ack) {
  std::unique_lock lock(mu_);
  if (end_status_.has_value()) return;
  v1::GenerateEvent e;
  *e.mutable_command_ack() = std::move(ack);
  PushLocked(std::move(e));
  Pump(std::move(lock));
}

void SessionOutbox::Detach() {
  std::lock_guard lock(mu_);
  writer_ = nullptr;
  DropQueuedLocked();
  if (!end_status_.has_value()) end_status_ = absl::CancelledError("the stream is closed");
}

int SessionOutbox::PendingEvents() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(queue_.size()) + (in_flight_ != nullptr ? 1 : 0);
}

bool SessionOutbox::Ended() const {
  std::lock_guard lock(mu_);
  return end_status_.has_value();
}

void SessionOutbox::OnQueued(int position, double estimated_start_seconds) {
  std::unique_lock lock(mu_);
  if (end_status_.has_value()) return;
  v1::GenerateEvent e;
  e.mutable_queued()->set_position(static_cast<uint32_t>(std::max(0, position)));
  e.mutable_queued()->set_estimated_start_seconds(estimated_start_seconds);
  if (!queue_.empty() && queue_.back().has_queued()) {
    queue_.back() = std::move(e);  // coalesce: only the latest position matters
  } else {
    PushLocked(std::move(e));
  }
  Pump(std::move(lock));
}

void SessionOutbox::OnStarted() {
  spdlog::debug("[session {}] started after {:.3f} s", session_id_.load(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - created_).count());
}

void SessionOutbox::OnProgress(int64_t block, int step, int num_steps) {
  std::unique_lock lock(mu_);
  if (end_status_.has_value()) return;
  spdlog::debug("[session {}] block {} step {}/{}", session_id_.load(), block, step, num_steps);
  v1::GenerateEvent e;
  e.mutable_progress()->set_block(static_cast<uint32_t>(std::max<int64_t>(0, block)));
  e.mutable_progress()->set_step(static_cast<uint32_t>(std::max(0, step)));
  e.mutable_progress()->set_num_steps(static_cast<uint32_t>(std::max(0, num_steps)));
  // Coalesce with an unwritten Progress at the tail; a reader that is behind sees the latest.
  if (!queue_.empty() && queue_.back().has_progress()) {
    queue_.back() = std::move(e);
  } else {
    PushLocked(std::move(e));
  }
  Pump(std::move(lock));
}

void SessionOutbox::OnChunk(engine::VideoChunk chunk) {
  std::unique_lock lock(mu_);
  if (end_status_.has_value()) return;
  spdlog::debug("[session {}] chunk {} (block {}, {} frames, {} bytes)", session_id_.load(),
                chunk.sequence, chunk.block_index, chunk.num_frames, chunk.bytes.size());
  v1::GenerateEvent e;
  ToProto(std::move(chunk), e.mutable_chunk());
  chunks_.fetch_add(1);
  PushLocked(std::move(e));
  Pump(std::move(lock));
}

void SessionOutbox::OnCommandAck(const engine::CommandAck& ack) {
  std::unique_lock lock(mu_);
  if (end_status_.has_value()) return;
  v1::GenerateEvent e;
  if (ack.status.ok()) {
    spdlog::info("[session {}] command {} takes effect at block {}", session_id_.load(),
                 ack.command_id, ack.effective_block);
    *e.mutable_command_ack() = ToProto(ack);
  } else {
    spdlog::info("[session {}] command {} refused: {}", session_id_.load(), ack.command_id,
                 ack.status.ToString());
    *e.mutable_command_ack() = ErrorAck(ack.command_id, ack.status);
  }
  PushLocked(std::move(e));
  Pump(std::move(lock));
}

void SessionOutbox::OnCompleted(const engine::CompletionStats& stats) {
  std::unique_lock lock(mu_);
  if (end_status_.has_value()) return;
  spdlog::debug("[session {}] completed: {} frames in {} blocks, {:.2f} fps", session_id_.load(),
                stats.frames, stats.blocks, stats.generation_fps);
  v1::GenerateEvent e;
  *e.mutable_completed() = ToProto(stats);
  PushLocked(std::move(e));
  end_status_ = absl::OkStatus();
  Pump(std::move(lock));
}

void SessionOutbox::OnFailed(const absl::Status& status) {
  std::unique_lock lock(mu_);
  if (end_status_.has_value()) return;
  spdlog::debug("[session {}] failed: {}", session_id_.load(), status.ToString());
  // Chunks already queued are still delivered (a partial video is playable), then the status.
  end_status_ = status;
  Pump(std::move(lock));
}

bool SessionOutbox::Congested() const {
  const bool congested = chunks_.load() >= options_.max_chunks;
  if (congested) congested_polls_.fetch_add(1);
  return congested;
}

void SessionOutbox::PushLocked(v1::GenerateEvent event) { queue_.push_back(std::move(event)); }

void SessionOutbox::DropQueuedLocked() {
  for (const auto& e : queue_) {
    if (e.has_chunk()) chunks_.fetch_sub(1);
  }
  queue_.clear();
}

void SessionOutbox::Pump(std::unique_lock<std::mutex> lock) {
  if (writer_ == nullptr || !opened_ || finish_started_ || in_flight_ != nullptr) return;
  EventWriter* writer = writer_;
  if (!queue_.empty()) {
    in_flight_ = std::make_unique<v1::GenerateEvent>(std::move(queue_.front()));
    queue_.pop_front();
    const v1::GenerateEvent* event = in_flight_.get();
    lock.unlock();
    // in_flight_ is only reset by OnWriteDone of this very write, so `event` stays valid.
    writer->StartEventWrite(event);
    return;
  }
  if (end_status_.has_value()) {
    finish_started_ = true;
    const absl::Status status = *end_status_;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - created_).count();
    const std::string line =
        fmt::format("[session {}] stream closed: {}; {} chunks ({} bytes) delivered in {:.3f} s",
                    session_id_.load(), status.ok() ? "OK" : status.ToString(), chunks_delivered_,
                    bytes_delivered_, seconds);
    lock.unlock();
    // Failures the client caused or asked for are lifecycle; anything else is a warning.
    const auto code = status.code();
    if (status.ok() || code == absl::StatusCode::kCancelled ||
        code == absl::StatusCode::kDeadlineExceeded || code == absl::StatusCode::kUnavailable ||
        code == absl::StatusCode::kInvalidArgument) {
      spdlog::info("{}", line);
    } else {
      spdlog::warn("{}", line);
    }
    writer->FinishStream(status);
  }
}

}  // namespace longsana::server
