#include "server/session_broadcast.h"

#include <fmt/format.h>

#include <utility>
#include <vector>

namespace longsana::server {
namespace {

// The same answer for an unknown session and another tenant's: Watch must not tell other
// tenants which sessions exist.
absl::Status NoSuchSession(engine::SessionId id) {
  return absl::NotFoundError(fmt::format("session_id: no running session {}", id));
}

bool IsFragment(const v1::GenerateEvent& event) {
  return event.has_chunk() && event.chunk().block_index() >= 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// BroadcastRegistry

std::shared_ptr<BroadcastRegistry> BroadcastRegistry::Create(BroadcastOptions options) {
  return std::shared_ptr<BroadcastRegistry>(new BroadcastRegistry(options));
}

std::shared_ptr<SessionBroadcast> BroadcastRegistry::NewBroadcast(std::string tenant) {
  return std::make_shared<SessionBroadcast>(shared_from_this(), std::move(tenant));
}

absl::StatusOr<std::shared_ptr<BroadcastViewer>> BroadcastRegistry::Join(engine::SessionId id,
                                                                         std::string_view tenant,
                                                                         std::string request_id,
                                                                         EventWriter* writer) {
  std::shared_ptr<SessionBroadcast> broadcast;
  {
    std::lock_guard lock(mu_);
    const auto it = sessions_.find(id);
    if (it != sessions_.end()) broadcast = it->second.weak.lock();
  }
  if (broadcast == nullptr) return NoSuchSession(id);
  return broadcast->AddViewer(tenant, std::move(request_id), writer);
}

int BroadcastRegistry::sessions() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(sessions_.size());
}

void BroadcastRegistry::Register(engine::SessionId id, const SessionBroadcast* broadcast,
                                 std::weak_ptr<SessionBroadcast> weak) {
  std::lock_guard lock(mu_);
  sessions_[id] = Entry{broadcast, std::move(weak)};
}

void BroadcastRegistry::Unregister(engine::SessionId id, const SessionBroadcast* broadcast) {
  std::lock_guard lock(mu_);
  const auto it = sessions_.find(id);
  if (it != sessions_.end() && it->second.broadcast == broadcast) sessions_.erase(it);
}

// ---------------------------------------------------------------------------------------
// SessionBroadcast

SessionBroadcast::SessionBroadcast(std::shared_ptr<BroadcastRegistry> registry, std::string tenant)
    : registry_(std::move(registry)), tenant_(std::move(tenant)) {}

SessionBroadcast::~SessionBroadcast() {
  // Only reachable without End when the outbox was dropped without ending (a rejected
  // Submit): nobody can be watching, but the entry must go.
  if (id_ != 0 && !ended_) registry_->Unregister(id_, this);
}

void SessionBroadcast::Open(engine::SessionId id, v1::Accepted accepted) {
  std::lock_guard lock(mu_);
  if (ended_ || accepted_.has_value()) return;
  id_ = id;
  accepted_ = std::move(accepted);
  registry_->Register(id, this, weak_from_this());
}

void SessionBroadcast::Publish(SharedEvent chunk) {
  std::vector<std::shared_ptr<BroadcastViewer>> pump;
  {
    std::lock_guard lock(mu_);
    if (ended_ || !chunk->has_chunk()) return;
    if (!IsFragment(*chunk)) {
      init_ = chunk;
    } else {
      if (chunk->chunk().keyframe()) group_.clear();
      group_.push_back(chunk);
    }
    for (const auto& [key, viewer] : viewers_) {
      if (viewer->Offer(chunk)) pump.push_back(viewer);
    }
  }
  for (const auto& viewer : pump) viewer->PumpNow();
}

void SessionBroadcast::End(const absl::Status& status, SharedEvent last) {
  std::vector<std::shared_ptr<BroadcastViewer>> pump;
  {
    std::lock_guard lock(mu_);
    if (ended_) return;
    ended_ = true;
    init_.reset();
    group_.clear();
    for (const auto& [key, viewer] : viewers_) {
      if (viewer->OfferEnd(status, last)) pump.push_back(viewer);
    }
    viewers_.clear();
    if (id_ != 0) registry_->Unregister(id_, this);
  }
  for (const auto& viewer : pump) viewer->PumpNow();
}

int SessionBroadcast::viewers() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(viewers_.size());
}

absl::StatusOr<std::shared_ptr<BroadcastViewer>> SessionBroadcast::AddViewer(
    std::string_view tenant, std::string request_id, EventWriter* writer) {
  std::lock_guard lock(mu_);
  if (ended_ || !accepted_.has_value() || tenant != tenant_) return NoSuchSession(id_);
  const BroadcastOptions& options = registry_->options();
  if (static_cast<int>(viewers_.size()) >= options.max_viewers_per_session) {
    return absl::ResourceExhaustedError(fmt::format(
        "--max_watchers_per_session: session {} already has {} viewers, the most one session "
        "may have",
        id_, viewers_.size()));
  }
  auto viewer = std::make_shared<BroadcastViewer>(weak_from_this(), options.viewer_buffer_chunks,
                                                  options.metrics, writer);
  auto watching = std::make_shared<v1::GenerateEvent>();
  v1::Accepted* session = watching->mutable_watching()->mutable_session();
  *session = *accepted_;
  session->set_request_id(std::move(request_id));
  session->set_queue_position(0);
  watching->mutable_watching()->set_viewers(static_cast<uint32_t>(viewers_.size() + 1));
  viewer->Offer(std::move(watching));
  if (init_ != nullptr) viewer->Offer(init_);
  for (const auto& fragment : group_) viewer->Offer(fragment);
  viewers_.emplace(viewer.get(), viewer);
  return viewer;
}

void SessionBroadcast::RemoveViewer(const BroadcastViewer* viewer) {
  std::shared_ptr<BroadcastViewer> removed;  // destroyed after the lock is released
  std::lock_guard lock(mu_);
  const auto it = viewers_.find(viewer);
  if (it == viewers_.end()) return;
  removed = std::move(it->second);
  viewers_.erase(it);
}

// ---------------------------------------------------------------------------------------
// BroadcastViewer

BroadcastViewer::BroadcastViewer(std::weak_ptr<SessionBroadcast> broadcast, int buffer_chunks,
                                 ServerMetrics* metrics, EventWriter* writer)
    : broadcast_(std::move(broadcast)),
      buffer_chunks_(buffer_chunks),
      metrics_(metrics),
      writer_(writer) {
  if (metrics_ != nullptr) metrics_->WatcherJoined();
}

BroadcastViewer::~BroadcastViewer() {
  if (!detached_ && metrics_ != nullptr) metrics_->WatcherLeft();
}

void BroadcastViewer::Start() {
  std::unique_lock lock(mu_);
  started_ = true;
  Pump(std::move(lock));
}

void BroadcastViewer::OnWriteDone(bool ok) {
  std::unique_lock lock(mu_);
  if (in_flight_ != nullptr && IsFragment(*in_flight_)) --chunks_;
  in_flight_.reset();
  if (!ok && !end_status_.has_value()) {
    queue_.clear();
    chunks_ = 0;
    end_status_ = absl::CancelledError("the viewer is gone");
  }
  Pump(std::move(lock));
}

void BroadcastViewer::Abort(const absl::Status& status) {
  std::unique_lock lock(mu_);
  if (finish_started_) return;
  queue_.clear();
  chunks_ = in_flight_ != nullptr && IsFragment(*in_flight_) ? 1 : 0;
  end_status_ = status;
  Pump(std::move(lock));
}

void BroadcastViewer::Detach() {
  {
    std::lock_guard lock(mu_);
    writer_ = nullptr;
    queue_.clear();
    if (!end_status_.has_value()) end_status_ = absl::CancelledError("the stream is closed");
    if (detached_) return;
    detached_ = true;
  }
  if (metrics_ != nullptr) metrics_->WatcherLeft();
  if (auto broadcast = broadcast_.lock()) broadcast->RemoveViewer(this);
}

int64_t BroadcastViewer::skipped_chunks() const {
  std::lock_guard lock(mu_);
  return skipped_;
}

int BroadcastViewer::pending_events() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(queue_.size()) + (in_flight_ != nullptr ? 1 : 0);
}

bool BroadcastViewer::Offer(SharedEvent event) {
  std::lock_guard lock(mu_);
  if (end_status_.has_value() || detached_) return false;
  if (IsFragment(*event)) {
    // Decided once per group of pictures, at its keyframe, so a group is kept or dropped
    // whole: what the viewer gets always decodes.
    if (event->chunk().keyframe()) skipping_group_ = chunks_ >= buffer_chunks_;
    if (skipping_group_) {
      ++skipped_;
      if (metrics_ != nullptr) metrics_->WatchChunksSkipped(1);
      return false;
    }
    ++chunks_;
  }
  queue_.push_back(std::move(event));
  return true;
}

bool BroadcastViewer::OfferEnd(const absl::Status& status, SharedEvent last) {
  std::lock_guard lock(mu_);
  if (end_status_.has_value() || detached_) return false;
  if (last != nullptr) queue_.push_back(std::move(last));
  end_status_ = status;
  return true;
}

void BroadcastViewer::Pump(std::unique_lock<std::mutex> lock) {
  if (writer_ == nullptr || !started_ || finish_started_ || in_flight_ != nullptr) return;
  EventWriter* writer = writer_;
  if (!queue_.empty()) {
    in_flight_ = std::move(queue_.front());
    queue_.pop_front();
    const v1::GenerateEvent* event = in_flight_.get();
    lock.unlock();
    // in_flight_ is reset only by OnWriteDone of this write, so `event` stays valid.
    writer->StartEventWrite(event);
    return;
  }
  if (end_status_.has_value()) {
    finish_started_ = true;
    const absl::Status status = *end_status_;
    lock.unlock();
    writer->FinishStream(status);
  }
}

}  // namespace longsana::server
