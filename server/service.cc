#include "server/service.h"

#include <grpcpp/alarm.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <optional>
#include <utility>

#include "engine/api/log_tag.h"
#include "server/admission.h"
#include "server/grpc_status.h"
#include "server/request_id.h"
#include "server/session_outbox.h"
#include "server/token_bucket.h"

namespace longsana::server {
namespace {

absl::Status CancelReason(const grpc::CallbackServerContext* context) {
  if (context->deadline() <= std::chrono::system_clock::now()) {
    return absl::DeadlineExceededError("the client's deadline passed");
  }
  return absl::CancelledError("cancelled by the client");
}

std::optional<std::string_view> Metadata(const grpc::CallbackServerContext* context,
                                         std::string_view key) {
  const auto& metadata = context->client_metadata();
  const auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
  if (it == metadata.end()) return std::nullopt;
  return std::string_view(it->second.data(), it->second.size());
}

// The request id and the tenant; the status when the call is not authenticated
// (identity.tenant is then the anonymous tenant). The request id is echoed in the trailing
// metadata of every call, and in the initial metadata of one that answers (EchoRequestId):
// a refusal must stay a trailers-only response, which clients' retry policies (gRPC's,
// Envoy's) may retry on another replica; response headers would commit the call.
absl::Status Identify(const LongSanaService& service, grpc::CallbackServerContext* context,
                      CallIdentity* identity) {
  identity->request_id = RequestIdOrNew(Metadata(context, "x-request-id"));
  context->AddTrailingMetadata("x-request-id", identity->request_id);
  auto tenant = service.Authenticate(Metadata(context, "authorization"));
  if (!tenant.ok()) return tenant.status();
  identity->tenant = *tenant;
  return absl::OkStatus();
}

// The request id in the initial metadata of a call that answers: once it is admitted, before
// its first response message can be written.
void EchoRequestId(grpc::CallbackServerContext* context, const CallIdentity& who) {
  context->AddInitialMetadata("x-request-id", who.request_id);
}

// How long a refused client should wait before retrying, for RESOURCE_EXHAUSTED.
constexpr std::chrono::milliseconds kRetryAfterQueueFull{5'000};
constexpr std::chrono::milliseconds kRetryAfterQuota{2'000};

// Logs, counts and annotates a refusal; the caller then finishes the call with `status`.
void RecordRejection(LongSanaService& service, grpc::CallbackServerContext* context,
                     std::string_view rpc, const CallIdentity& who, const absl::Status& status,
                     RejectReason reason) {
  // Validation messages name fields and values, never the prompt's text or a token.
  spdlog::info("{} {} from {} rejected ({}): {}", who.LogTag(), rpc, context->peer(),
               RejectReasonName(reason), status.ToString());
  if (service.metrics() != nullptr) service.metrics()->Rejected(reason, who.tenant->name);
  if (absl::IsResourceExhausted(status)) {
    const bool full = reason == RejectReason::kQueueFull;
    const auto after = full ? kRetryAfterQueueFull : kRetryAfterQuota;
    // gRPC's retry pushback (honoured by gRPC retry policies) for a tenant over its quota,
    // which should slow down. Not for a full replica: there a client's retry policy should
    // try the next replica at once (pushback would delay that attempt too). An HTTP-style
    // hint for both.
    if (!full) {
      context->AddTrailingMetadata("grpc-retry-pushback-ms", std::to_string(after.count()));
    }
    context->AddTrailingMetadata(
        "retry-after", std::to_string(std::chrono::ceil<std::chrono::seconds>(after).count()));
  }
}

// ---------------------------------------------------------------------------------------
// Generate: one request, a stream of events.

class GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateEvent>,
                              public EventWriter {
 public:
  GenerateReactor(LongSanaService* service, grpc::CallbackServerContext* context,
                  const v1::GenerateRequest& request)
      : service_(service), context_(context) {
    service_->StreamOpened();
    if (auto s = Identify(*service, context, &who_); !s.ok()) {
      Reject(s, RejectReason::kUnauthenticated);
      return;
    }
    RejectReason reason = RejectReason::kInvalid;
    auto admitted = AdmitSession(*service, context->peer(), who_, request, /*interactive=*/false,
                                 "Generate", "", this, &reason);
    if (!admitted.ok()) {
      Reject(admitted.status(), reason);
      return;
    }
    engine_ = std::move(admitted->engine);
    outbox_ = std::move(admitted->outbox);
    session_id_ = admitted->info.id;
    peer_lease_ = std::move(admitted->peer_lease);
    EchoRequestId(context_, who_);
    outbox_->Open(admitted->info);
  }

  void StartEventWrite(const v1::GenerateEvent* event) override { StartWrite(event); }
  void FinishStream(const absl::Status& status) override { Finish(ToGrpcStatus(status)); }

  void OnWriteDone(bool ok) override {
    if (!ok) CancelSession(absl::CancelledError("the client is gone"));
    outbox_->OnWriteDone(ok);
  }

  void OnCancel() override {
    if (outbox_ == nullptr) return;  // rejected: already finished
    const absl::Status reason = CancelReason(context_);
    CancelSession(reason);
    outbox_->Abort(reason);
  }

  void OnDone() override {
    if (outbox_ != nullptr) outbox_->Detach();
    LongSanaService* service = service_;
    delete this;
    service->StreamClosed();
  }

 private:
  void Reject(const absl::Status& status, RejectReason reason) {
    RecordRejection(*service_, context_, "Generate", who_, status, reason);
    Finish(ToGrpcStatus(status));
  }

  void CancelSession(const absl::Status& reason) {
    if (cancel_sent_.exchange(true) || outbox_->Ended()) return;
    spdlog::info("{} cancelling: {}", who_.LogTag(session_id_), reason.ToString());
    engine_->Cancel(session_id_, reason);
  }

  LongSanaService* const service_;
  grpc::CallbackServerContext* const context_;
  CallIdentity who_;
  std::shared_ptr<engine::Engine> engine_;
  std::shared_ptr<SessionOutbox> outbox_;  // null when the request was rejected
  engine::SessionId session_id_ = 0;
  PeerSessionLimiter::Lease peer_lease_;  // given back when OnDone deletes the reactor
  std::atomic<bool> cancel_sent_{false};
};

// ---------------------------------------------------------------------------------------
// Session: commands in, events out.

class SessionReactor final : public grpc::ServerBidiReactor<v1::SessionCommand, v1::GenerateEvent>,
                             public EventWriter {
 public:
  SessionReactor(LongSanaService* service, grpc::CallbackServerContext* context)
      : service_(service), context_(context) {
    service_->StreamOpened();
    if (service->options().command_rate > 0) {
      bucket_.emplace(service->options().command_rate, service->options().command_burst,
                      TokenBucket::Clock::now());
    }
    if (auto s = Identify(*service, context, &who_); !s.ok()) {
      Reject(s, RejectReason::kUnauthenticated);
      return;
    }
    StartRead(&command_);
  }

  void StartEventWrite(const v1::GenerateEvent* event) override { StartWrite(event); }
  void FinishStream(const absl::Status& status) override { Finish(ToGrpcStatus(status)); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // Half-close (or a broken stream, which OnCancel handles): generation goes on.
      std::shared_ptr<SessionOutbox> outbox;
      {
        std::lock_guard lock(mu_);
        reading_ = false;
        outbox = outbox_;
      }
      if (outbox == nullptr) {
        FinishOnce(absl::InvalidArgumentError(
            "command: the request stream ended before a `start` command"));
      }
      return;
    }
    std::shared_ptr<SessionOutbox> outbox;
    {
      std::lock_guard lock(mu_);
      outbox = outbox_;
    }
    if (outbox == nullptr) {
      if (!HandleStart()) return;
    } else if (!HandleCommand(*outbox)) {
      return;
    }
    ReadNextIfRoom();
  }

  void OnWriteDone(bool ok) override {
    std::shared_ptr<SessionOutbox> outbox;
    {
      std::lock_guard lock(mu_);
      outbox = outbox_;
    }
    if (!ok) CancelSession(absl::CancelledError("the client is gone"));
    outbox->OnWriteDone(ok);
    bool resume = false;
    {
      std::lock_guard lock(mu_);
      if (read_paused_ && reading_ && !outbox->Ended() &&
          outbox->PendingEvents() < service_->options().max_pending_events) {
        read_paused_ = false;
        resume = true;
      }
    }
    if (resume) ReadNextIfRoom();
  }

  void OnCancel() override {
    const absl::Status reason = CancelReason(context_);
    std::shared_ptr<SessionOutbox> outbox;
    {
      std::lock_guard lock(mu_);
      cancelled_ = true;
      outbox = outbox_;
    }
    if (outbox == nullptr) {
      FinishOnce(reason);
      return;
    }
    CancelSession(reason);
    outbox->Abort(reason);
  }

  void OnDone() override {
    std::shared_ptr<SessionOutbox> outbox;
    {
      std::lock_guard lock(mu_);
      outbox = outbox_;
    }
    if (outbox != nullptr) outbox->Detach();
    grpc::Alarm* alarm = nullptr;
    {
      std::lock_guard lock(mu_);
      done_ = true;
      if (alarms_outstanding_ > 0) {
        ++alarms_outstanding_;  // keeps the reactor alive across Cancel below
        alarm = alarm_.get();
      }
    }
    if (alarm == nullptr) {
      Destroy();
      return;
    }
    // An armed alarm must not fire into a deleted reactor: cancel it (its callback then runs
    // promptly with ok = false) and let the last callback delete.
    {
      std::lock_guard lock(alarm_mu_);
      alarm->Cancel();
    }
    ReleaseAlarmRef();
  }

 private:
  void Destroy() {
    LongSanaService* service = service_;
    delete this;  // gives the peer lease back
    service->StreamClosed();
  }

  void ReleaseAlarmRef() {
    bool destroy = false;
    {
      std::lock_guard lock(mu_);
      destroy = --alarms_outstanding_ == 0 && done_;
    }
    if (destroy) Destroy();
  }

  // The rate limit's wake-up (on a gRPC executor thread): read the command that waited for
  // its token. Cancelled (ok false) only by OnDone.
  void OnAlarm(bool ok) {
    {
      std::lock_guard lock(mu_);
      throttled_ = false;
    }
    if (ok) ReadNextIfRoom();
    ReleaseAlarmRef();
  }

  // Returns true when the session started and commands should be read.
  bool HandleStart() {
    if (!command_.has_start()) {
      return Reject(FirstCommandNotStartError(), RejectReason::kInvalid);
    }
    RejectReason reason = RejectReason::kInvalid;
    auto admitted = AdmitSession(*service_, context_->peer(), who_, command_.start(),
                                 /*interactive=*/true, "Session", "start.", this, &reason);
    if (!admitted.ok()) return Reject(admitted.status(), reason);
    bool cancelled = false;
    {
      std::lock_guard lock(mu_);
      engine_ = admitted->engine;
      session_id_ = admitted->info.id;
      peer_lease_ = std::move(admitted->peer_lease);
      cancelled = cancelled_;
      if (!cancelled) outbox_ = admitted->outbox;
    }
    if (cancelled) {
      // OnCancel ran while the session was being submitted and already finished the call.
      admitted->outbox->Detach();
      admitted->engine->Cancel(admitted->info.id, CancelReason(context_));
      return false;
    }
    EchoRequestId(context_, who_);
    admitted->outbox->Open(admitted->info);
    return true;
  }

  // Returns true when more commands should be read.
  bool HandleCommand(SessionOutbox& outbox) {
    if (command_.command_case() == v1::SessionCommand::kStart) {
      const absl::Status s = StartedTwiceError();
      spdlog::info("{} protocol error: {}", who_.LogTag(session_id_), s.ToString());
      CancelSession(s);
      outbox.Abort(s);
      return false;
    }
    SendSessionCommand(*service_, *engine_, session_id_, who_, outbox, command_);
    return true;
  }

  // Issues the next command read unless the client must catch up first (too many pending
  // events: OnWriteDone resumes) or the rate limit has no token (an alarm reads when one is
  // due). Throttling reads, not refusing commands, lets HTTP/2 flow control slow the client
  // down while every command is still applied in order. Never called with a read in flight.
  void ReadNextIfRoom() {
    bool read = false;
    grpc::Alarm* arm = nullptr;
    TokenBucket::Clock::duration wait{};
    {
      std::lock_guard lock(mu_);
      if (!reading_ || cancelled_ || done_ || throttled_) return;
      if (outbox_ != nullptr && outbox_->Ended()) return;  // nothing left to steer
      if (outbox_ != nullptr &&
          outbox_->PendingEvents() >= service_->options().max_pending_events) {
        read_paused_ = true;  // OnWriteDone resumes reading once the client catches up
      } else if (bucket_.has_value() &&
                 (wait = bucket_->TryTake(TokenBucket::Clock::now())) > wait.zero()) {
        throttled_ = true;
        ++alarms_outstanding_;
        // A fresh alarm per wait: the previous one has fired (its callback may be the caller;
        // its implementation outlives the wrapper until that callback returns).
        alarm_ = std::make_unique<grpc::Alarm>();
        arm = alarm_.get();
      } else {
        read = true;
      }
    }
    if (arm != nullptr) {
      const auto deadline = std::chrono::system_clock::now() +
                            std::chrono::ceil<std::chrono::system_clock::duration>(wait);
      std::lock_guard lock(alarm_mu_);
      arm->Set(deadline, [this](bool ok) { OnAlarm(ok); });
    }
    if (read) StartRead(&command_);
  }

  bool Reject(const absl::Status& status, RejectReason reason) {
    RecordRejection(*service_, context_, "Session", who_, status, reason);
    FinishOnce(status);
    return false;
  }

  // Finishes a call that has no outbox (rejected before a session existed).
  void FinishOnce(const absl::Status& status) {
    if (finished_direct_.exchange(true)) return;
    Finish(ToGrpcStatus(status));
  }

  void CancelSession(const absl::Status& reason) {
    std::shared_ptr<engine::Engine> engine;
    engine::SessionId id = 0;
    std::shared_ptr<SessionOutbox> outbox;
    {
      std::lock_guard lock(mu_);
      engine = engine_;
      id = session_id_;
      outbox = outbox_;
    }
    if (engine == nullptr || outbox == nullptr || outbox->Ended()) return;
    if (cancel_sent_.exchange(true)) return;
    spdlog::info("{} cancelling: {}", who_.LogTag(id), reason.ToString());
    engine->Cancel(id, reason);
  }

  LongSanaService* const service_;
  grpc::CallbackServerContext* const context_;
  CallIdentity who_;
  v1::SessionCommand command_;  // the read buffer; one read in flight at a time
  std::atomic<bool> finished_direct_{false};
  std::atomic<bool> cancel_sent_{false};

  std::mutex mu_;
  std::shared_ptr<engine::Engine> engine_;
  std::shared_ptr<SessionOutbox> outbox_;  // set once the session is submitted
  engine::SessionId session_id_ = 0;
  bool reading_ = true;  // the client has not half-closed
  bool read_paused_ = false;
  bool cancelled_ = false;
  PeerSessionLimiter::Lease peer_lease_;  // given back when the reactor is deleted

  // Command rate limit (null: unlimited). An alarm callback in flight, or OnDone cancelling
  // one, holds an alarms_outstanding_ reference; the reactor is deleted by whoever drops the
  // last one after OnDone (done_).
  std::optional<TokenBucket> bucket_;
  std::unique_ptr<grpc::Alarm> alarm_;
  bool throttled_ = false;  // an alarm is armed and will issue the next read
  int alarms_outstanding_ = 0;
  bool done_ = false;
  std::mutex alarm_mu_;  // serializes Set and Cancel of alarm_ (never held in OnAlarm)
};

// ---------------------------------------------------------------------------------------
// Watch: another viewer of a running session.

class WatchReactor final : public grpc::ServerWriteReactor<v1::GenerateEvent>, public EventWriter {
 public:
  WatchReactor(LongSanaService* service, grpc::CallbackServerContext* context,
               const v1::WatchRequest& request)
      : service_(service), context_(context) {
    service_->StreamOpened();
    if (auto s = Identify(*service, context, &who_); !s.ok()) {
      Reject(s, RejectReason::kUnauthenticated);
      return;
    }
    if (auto engine = service->AcquireEngine(); !engine.ok()) {
      Reject(engine.status(), ReasonOfUnavailable(*service));
      return;
    }
    auto id = ParseSessionId(request.session_id());
    if (!id.ok()) {
      Reject(id.status(), RejectReason::kInvalid);
      return;
    }
    session_id_ = *id;
    auto viewer = service->broadcasts()->Join(*id, who_.tenant->name, who_.request_id, this);
    if (!viewer.ok()) {
      Reject(viewer.status(), absl::IsResourceExhausted(viewer.status())
                                  ? RejectReason::kWatcherLimit
                                  : RejectReason::kNotFound);
      return;
    }
    viewer_ = std::move(*viewer);
    EchoRequestId(context_, who_);
    spdlog::info("{} watch opened: Watch from {}", who_.LogTag(session_id_), context->peer());
    viewer_->Start();
  }

  void StartEventWrite(const v1::GenerateEvent* event) override { StartWrite(event); }
  void FinishStream(const absl::Status& status) override {
    spdlog::info("{} watch closed: {}; {} fragments skipped", who_.LogTag(session_id_),
                 status.ok() ? "OK" : status.ToString(), viewer_->skipped_chunks());
    Finish(ToGrpcStatus(status));
  }

  void OnWriteDone(bool ok) override { viewer_->OnWriteDone(ok); }

  void OnCancel() override {
    if (viewer_ != nullptr) viewer_->Abort(CancelReason(context_));
  }

  void OnDone() override {
    if (viewer_ != nullptr) viewer_->Detach();
    LongSanaService* service = service_;
    delete this;
    service->StreamClosed();
  }

 private:
  void Reject(const absl::Status& status, RejectReason reason) {
    RecordRejection(*service_, context_, "Watch", who_, status, reason);
    Finish(ToGrpcStatus(status));
  }

  LongSanaService* const service_;
  grpc::CallbackServerContext* const context_;
  CallIdentity who_;
  engine::SessionId session_id_ = 0;
  std::shared_ptr<BroadcastViewer> viewer_;  // null when the call was rejected
};

}  // namespace

LongSanaService::LongSanaService(const ServerOptions& options, std::string build, ServiceDeps deps)
    : options_(options),
      build_(std::move(build)),
      deps_(deps),
      peers_(options.max_sessions_per_peer),
      broadcasts_(
          BroadcastRegistry::Create({.viewer_buffer_chunks = options.watch_buffer_chunks,
                                     .max_viewers_per_session = options.max_watchers_per_session,
                                     .metrics = deps.metrics})) {}

absl::StatusOr<const Tenant*> LongSanaService::Authenticate(
    std::optional<std::string_view> authorization) const {
  if (deps_.tenants == nullptr) return &AnonymousTenant();
  return deps_.tenants->Authenticate(authorization);
}

LongSanaService::~LongSanaService() = default;

void LongSanaService::SetEngine(std::shared_ptr<engine::Engine> engine) {
  const RequestLimits limits = RequestLimits::FromModelInfo(engine->Info());
  {
    std::lock_guard lock(mu_);
    engine_ = std::move(engine);
    limits_ = limits;
  }
  phase_.store(ServingPhase::kServing);
}

void LongSanaService::SetPhase(ServingPhase phase, const absl::Status& reason) {
  if (phase == ServingPhase::kLoadFailed) {
    std::lock_guard lock(mu_);
    load_error_ = reason;
  }
  phase_.store(phase);
}

absl::StatusOr<std::shared_ptr<engine::Engine>> LongSanaService::AcquireEngine() const {
  switch (phase_.load()) {
    case ServingPhase::kLoading:
      return absl::UnavailableError("loading: the models are being loaded and warmed up");
    case ServingPhase::kDraining:
      return absl::UnavailableError("draining: the server is shutting down");
    case ServingPhase::kUnhealthy:
      return absl::UnavailableError("unhealthy: the engine reported a device failure");
    case ServingPhase::kLoadFailed: {
      std::lock_guard lock(mu_);
      return absl::UnavailableError(
          fmt::format("the models failed to load: {}", load_error_.ToString()));
    }
    case ServingPhase::kServing:
      break;
  }
  std::lock_guard lock(mu_);
  return engine_;
}

void LongSanaService::StreamOpened() {
  std::lock_guard lock(mu_);
  ++open_streams_;
}

void LongSanaService::StreamClosed() {
  {
    std::lock_guard lock(mu_);
    --open_streams_;
  }
  streams_cv_.notify_all();
}

int LongSanaService::open_streams() const {
  std::lock_guard lock(mu_);
  return open_streams_;
}

bool LongSanaService::WaitForStreamsClosed(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return streams_cv_.wait_for(lock, timeout, [&] { return open_streams_ == 0; });
}

RequestLimits LongSanaService::limits() const {
  std::lock_guard lock(mu_);
  return limits_;
}

grpc::ServerWriteReactor<v1::GenerateEvent>* LongSanaService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  return new GenerateReactor(this, context, *request);
}

grpc::ServerBidiReactor<v1::SessionCommand, v1::GenerateEvent>* LongSanaService::Session(
    grpc::CallbackServerContext* context) {
  return new SessionReactor(this, context);
}

grpc::ServerWriteReactor<v1::GenerateEvent>* LongSanaService::Watch(
    grpc::CallbackServerContext* context, const v1::WatchRequest* request) {
  return new WatchReactor(this, context, *request);
}

grpc::ServerUnaryReactor* LongSanaService::GetServerInfo(grpc::CallbackServerContext* context,
                                                         const v1::GetServerInfoRequest* request,
                                                         v1::ServerInfo* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  CallIdentity who;
  if (auto s = Identify(*this, context, &who); !s.ok()) {
    RecordRejection(*this, context, "GetServerInfo", who, s, RejectReason::kUnauthenticated);
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  std::shared_ptr<engine::Engine> engine;
  {
    std::lock_guard lock(mu_);
    engine = engine_;
  }
  // Answered while draining or unhealthy too (capacity.draining tells): operators look.
  if (engine == nullptr) {
    auto status = AcquireEngine().status();
    reactor->Finish(ToGrpcStatus(status));
    return reactor;
  }
  EchoRequestId(context, who);
  *response = ToServerInfo(engine->Info(), engine->Stats(), build_);
  if (phase_.load() == ServingPhase::kDraining) response->mutable_capacity()->set_draining(true);
  if (deps_.metrics != nullptr) {
    // The server's own outcome counts: it sees rejections the engine never does, and knows
    // a client's protocol mistake from a server fault.
    const ServerMetrics::Totals totals = deps_.metrics->totals();
    auto* capacity = response->mutable_capacity();
    capacity->set_completed(totals.completed);
    capacity->set_failed(totals.failed);
    capacity->set_cancelled(totals.cancelled);
    capacity->set_rejected(totals.rejected);
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace longsana::server
