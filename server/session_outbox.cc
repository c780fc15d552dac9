#include "server/session_outbox.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "engine/api/log_tag.h"
#include "server/proto_mapping.h"
#include "server/session_broadcast.h"

namespace longsana::server {

namespace {
double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

SessionOutbox::SessionOutbox(OutboxOptions options, EventWriter* writer)
    : options_(std::move(options)),
      broadcast_(options_.broadcasts != nullptr ? options_.broadcasts->NewBroadcast(options_.tenant)
                                                : nullptr),
      writer_(writer),
      tag_(engine::FormatLogTag({0, options_.tenant, options_.request_id})) {}

SessionOutbox::~SessionOutbox() {
  if (broadcast_ != nullptr) broadcast_->End(absl::CancelledError("the session's stream is gone"));
}

void SessionOutbox::Open(const engine::SessionInfo& info) {
  if (broadcast_ != nullptr) broadcast_->Open(info.id, ToAccepted(info));
  std::unique_lock lock(mu_);
  session_id_.store(info.id);
  tag_ = engine::FormatLogTag({info.id, options_.tenant, options_.request_id});
  fps_ = info.fps > 0 ? info.fps : 16;
  v1::GenerateEvent accepted;
  *accepted.mutable_accepted() = ToAccepted(info);
  accepted.mutable_accepted()->set_request_id(options_.request_id);
  queue_.push_front(std::move(accepted));
  opened_ = true;
  spdlog::info("{} stream opened: {}", tag_, options_.label);
  Pump(std::move(lock));
}

void SessionOutbox::OnWriteDone(bool ok) {
  // The owner is gone: its reactor cancels the session, which its viewers see end.
  if (!ok && broadcast_ != nullptr) broadcast_->End(absl::CancelledError("the client is gone"));
  std::unique_lock lock(mu_);
  if (in_flight_ != nullptr && in_flight_->has_chunk()) {
    chunks_.fetch_sub(1);
    if (ok) {
      ++chunks_delivered_;
      const auto bytes = static_cast<int64_t>(in_flight_->chunk().data().size());
      bytes_delivered_ += bytes;
      if (options_.metrics != nullptr) options_.metrics->ChunkSent(bytes);
    }
  }
  in_flight_.reset();
  if (!ok && !end_status_.has_value()) {
    spdlog::info("{} client gone (write failed)", tag_);
    DropQueuedLocked();
    end_status_ = absl::CancelledError("the client is gone");
  }
  Pump(std::move(lock));
}

void SessionOutbox::Abort(const absl::Status& status) {
  if (broadcast_ != nullptr) broadcast_->End(status);
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
  if (broadcast_ != nullptr) broadcast_->End(absl::CancelledError("the stream is closed"));
  std::lock_guard lock(mu_);
  writer_ = nullptr;
  DropQueuedLocked();
  if (!end_status_.has_value()) end_status_ = absl::CancelledError("the stream is closed");
  RecordOutcomeLocked(*end_status_);
}

void SessionOutbox::RecordOutcomeLocked(const absl::Status& status) {
  if (!opened_ || outcome_recorded_) return;  // never accepted, or already counted
  outcome_recorded_ = true;
  if (options_.tenant_lease != nullptr) options_.tenant_lease->Release();
  if (options_.metrics != nullptr) options_.metrics->SessionEnded(status.code(), options_.tenant);
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
  if (options_.tenant_lease != nullptr) options_.tenant_lease->MarkStarted();
  const double waited = SecondsSince(created_);
  if (options_.metrics != nullptr) options_.metrics->QueueWait(waited);
  std::lock_guard lock(mu_);
  spdlog::debug("{} started after {:.3f} s", tag_, waited);
}

void SessionOutbox::OnProgress(int64_t block, int step, int num_steps) {
  std::unique_lock lock(mu_);
  if (end_status_.has_value()) return;
  spdlog::debug("{} block {} step {}/{}", tag_, block, step, num_steps);
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
  spdlog::debug("{} chunk {} (block {}, {} frames, {} bytes)", tag_, chunk.sequence,
                chunk.block_index, chunk.num_frames, chunk.bytes.size());
  if (chunk.block_index >= 0 && options_.metrics != nullptr) {
    const auto now = std::chrono::steady_clock::now();
    if (last_chunk_.has_value()) {
      options_.metrics->InterChunkGap(std::chrono::duration<double>(now - *last_chunk_).count());
    } else {
      options_.metrics->TimeToFirstChunk(std::chrono::duration<double>(now - created_).count());
    }
    last_chunk_ = now;
    if (chunk.last_in_block) options_.metrics->BlockStages(chunk.timing);
    if (chunk.switch_visible) {
      options_.metrics->SwitchVisible(chunk.switch_visible->latency_seconds,
                                      chunk.switch_visible->playback_delay_seconds);
    }
  }
  v1::GenerateEvent e;
  ToProto(std::move(chunk), e.mutable_chunk());
  // The viewers' copy: one per chunk, shared by all of them (and kept for late joiners).
  SharedEvent shared =
      broadcast_ != nullptr ? std::make_shared<const v1::GenerateEvent>(e) : nullptr;
  chunks_.fetch_add(1);
  PushLocked(std::move(e));
  // Viewers first: the owner must never be ahead of the broadcast (a Watch opened after the
  // owner read a fragment gets it), and the owner's stream may close, ending the broadcast,
  // as soon as Pump hands over the last write. Lock order: outbox, broadcast, viewer.
  if (shared != nullptr) broadcast_->Publish(std::move(shared));
  Pump(std::move(lock));
}

void SessionOutbox::OnCommandAck(const engine::CommandAck& ack) {
  std::unique_lock lock(mu_);
  if (end_status_.has_value()) return;
  v1::GenerateEvent e;
  if (ack.status.ok()) {
    spdlog::info("{} command {} takes effect at block {}", tag_, ack.command_id,
                 ack.effective_block);
    *e.mutable_command_ack() = ToProto(ack);
  } else {
    spdlog::info("{} command {} refused: {}", tag_, ack.command_id, ack.status.ToString());
    *e.mutable_command_ack() = ErrorAck(ack.command_id, ack.status);
  }
  PushLocked(std::move(e));
  Pump(std::move(lock));
}

void SessionOutbox::OnCompleted(const engine::CompletionStats& stats) {
  std::unique_lock lock(mu_);
  if (end_status_.has_value()) return;
  spdlog::debug("{} completed: {} frames in {} blocks, {:.2f} fps", tag_, stats.frames,
                stats.blocks, stats.generation_fps);
  if (options_.metrics != nullptr && stats.total_seconds > 0) {
    options_.metrics->RealTimeFactor(static_cast<double>(stats.frames) / fps_ /
                                     stats.total_seconds);
  }
  v1::GenerateEvent e;
  *e.mutable_completed() = ToProto(stats);
  SharedEvent shared =
      broadcast_ != nullptr ? std::make_shared<const v1::GenerateEvent>(e) : nullptr;
  PushLocked(std::move(e));
  end_status_ = absl::OkStatus();
  // Before Pump: once the owner's stream finishes, its Detach would end the viewers with
  // CANCELLED instead of this Completed.
  if (shared != nullptr) broadcast_->End(absl::OkStatus(), std::move(shared));
  Pump(std::move(lock));
}

void SessionOutbox::OnFailed(const absl::Status& status) {
  std::unique_lock lock(mu_);
  if (end_status_.has_value()) return;
  spdlog::debug("{} failed: {}", tag_, status.ToString());
  // Chunks already queued are still delivered (a partial video is playable), then the status.
  end_status_ = status;
  if (broadcast_ != nullptr) broadcast_->End(status);  // before Pump, as in OnCompleted
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
    const std::string line = fmt::format(
        "{} stream closed: {}; {} chunks ({} bytes) delivered in {:.3f} s", tag_,
        status.ok() ? "OK" : status.ToString(), chunks_delivered_, bytes_delivered_, seconds);
    RecordOutcomeLocked(status);
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
