#include "server/service.h"

#include <grpcpp/alarm.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <optional>
#include <utility>

#include "engine/api/log_tag.h"
#include "server/grpc_status.h"
#include "server/http_query.h"
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

// Who made a call: its tenant and request id (for logs, metrics and quotas).
struct CallIdentity {
  const Tenant* tenant = &AnonymousTenant();
  std::string request_id;
  std::string LogTag(engine::SessionId session = 0) const {
    return engine::FormatLogTag({session, tenant->name, request_id});
  }
};

std::optional<std::string_view> Metadata(const grpc::CallbackServerContext* context,
                                         std::string_view key) {
  const auto& metadata = context->client_metadata();
  const auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
  if (it == metadata.end()) return std::nullopt;
  return std::string_view(it->second.data(), it->second.size());
}

// The request id (echoed in the response's initial metadata) and the tenant; the status
// when the call is not authenticated (identity.tenant is then the anonymous tenant).
absl::Status Identify(const LongSanaService& service, grpc::CallbackServerContext* context,
                      CallIdentity* identity) {
  identity->request_id = RequestIdOrNew(Metadata(context, "x-request-id"));
  context->AddInitialMetadata("x-request-id", identity->request_id);
  auto tenant = service.Authenticate(Metadata(context, "authorization"));
  if (!tenant.ok()) return tenant.status();
  identity->tenant = *tenant;
  return absl::OkStatus();
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
    const auto after = reason == RejectReason::kQueueFull ? kRetryAfterQueueFull : kRetryAfterQuota;
    // gRPC's retry pushback (honoured by gRPC retry policies) and an HTTP-style hint.
    context->AddTrailingMetadata("grpc-retry-pushback-ms", std::to_string(after.count()));
    context->AddTrailingMetadata(
        "retry-after", std::to_string(std::chrono::ceil<std::chrono::seconds>(after).count()));
  }
}

RejectReason ReasonOfUnavailable(const LongSanaService& service) {
  return service.phase() == ServingPhase::kDraining ? RejectReason::kDraining
                                                    : RejectReason::kUnavailable;
}

// A session that passed every check and was submitted; its outbox is opened by the caller.
struct Admitted {
  std::shared_ptr<engine::Engine> engine;
  std::shared_ptr<SessionOutbox> outbox;
  engine::SessionInfo info;
  PeerSessionLimiter::Lease peer_lease;
};

// Validation, the tenant's priority ceiling and quotas, the per-peer cap, then Submit.
// On a refusal returns the status and sets *reason.
absl::StatusOr<Admitted> AdmitSession(LongSanaService& service, std::string_view peer,
                                      const CallIdentity& who, const v1::GenerateRequest& request,
                                      bool interactive, std::string_view rpc,
                                      std::string_view field_prefix, EventWriter* writer,
                                      RejectReason* reason) {
  auto engine = service.AcquireEngine();
  if (!engine.ok()) {
    *reason = ReasonOfUnavailable(service);
    return engine.status();
  }
  auto spec = ToSessionSpec(request, service.limits(), interactive);
  if (!spec.ok()) {
    *reason = RejectReason::kInvalid;
    // Name the field as the client wrote it (start.<field> in a Session stream).
    return absl::Status(spec.status().code(),
                        fmt::format("{}{}", field_prefix, std::string(spec.status().message())));
  }
  if (auto s = CheckPriority(*who.tenant, spec->priority, fmt::format("{}priority", field_prefix));
      !s.ok()) {
    *reason = RejectReason::kPermissionDenied;
    return s;
  }
  auto lease = service.peers().Acquire(peer);
  if (!lease.ok()) {
    *reason = RejectReason::kPeerLimit;
    return lease.status();
  }
  auto tenant_lease = TenantLease::Acquire(*who.tenant);
  if (!tenant_lease.ok()) {
    *reason = RejectReason::kQuota;
    return tenant_lease.status();
  }
  spec->tenant = who.tenant->name;
  spec->request_id = who.request_id;
  auto outbox =
      std::make_shared<SessionOutbox>(OutboxOptions{.max_chunks = service.options().outbox_chunks,
                                                    .label = fmt::format("{} from {}", rpc, peer),
                                                    .tenant = who.tenant->name,
                                                    .request_id = who.request_id,
                                                    .metrics = service.metrics(),
                                                    .tenant_lease = *tenant_lease,
                                                    .broadcasts = service.broadcasts()},
                                      writer);
  auto info = (*engine)->Submit(std::move(*spec), outbox);
  if (!info.ok()) {
    outbox->Detach();
    *reason = absl::IsResourceExhausted(info.status()) ? RejectReason::kQueueFull
              : absl::IsInvalidArgument(info.status()) ? RejectReason::kInvalid
              : absl::IsUnavailable(info.status())     ? ReasonOfUnavailable(service)
                                                       : RejectReason::kUnavailable;
    return info.status();
  }
  if (info->queue_position > 0) {
    if (auto s = (*tenant_lease)->MarkQueued(); !s.ok()) {
      outbox->Detach();
      (*engine)->Cancel(info->id, s);
      *reason = RejectReason::kQuota;
      return s;
    }
  }
  if (service.metrics() != nullptr) service.metrics()->SessionAccepted(who.tenant->name);
  return Admitted{std::move(*engine), std::move(outbox), std::move(*info), std::move(*lease)};
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
      return Reject(absl::InvalidArgumentError(
                        "command: the first command must be `start` (a GenerateRequest)"),
                    RejectReason::kInvalid);
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
    admitted->outbox->Open(admitted->info);
    return true;
  }

  // Returns true when more commands should be read.
  bool HandleCommand(SessionOutbox& outbox) {
    const uint64_t id = command_.command_id();
    if (command_.command_case() == v1::SessionCommand::kStart) {
      const absl::Status s = absl::InvalidArgumentError(
          "start: the session has already started; later commands are switch_prompt, "
          "extend or stop");
      spdlog::info("{} protocol error: {}", who_.LogTag(session_id_), s.ToString());
      CancelSession(s);
      outbox.Abort(s);
      return false;
    }
    SendCommand(outbox, id, CommandType(command_), ToEngineCommand(command_, service_->limits()));
    return true;
  }

  // Every command, accepted or refused (here or by the engine), is acknowledged by the
  // engine through the session's sink, so acks keep command order.
  void SendCommand(SessionOutbox& outbox, uint64_t id, std::string_view type,
                   absl::StatusOr<engine::SessionCommand> command) {
    auto ack = engine_->Command(session_id_, id, std::move(command));
    if (service_->metrics() != nullptr) {
      service_->metrics()->Command(type, ack.ok() && ack->status.ok());
    }
    if (!ack.ok()) {
      spdlog::info("{} command {} refused: {}", who_.LogTag(session_id_), id,
                   ack.status().ToString());
      // NotFound: the session has ended, so no ack of an earlier command is still to come.
      if (absl::IsNotFound(ack.status())) outbox.PushCommandAck(ErrorAck(id, ack.status()));
    }
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

  static std::string_view CommandType(const v1::SessionCommand& command) {
    switch (command.command_case()) {
      case v1::SessionCommand::kSwitchPrompt:
        return "switch_prompt";
      case v1::SessionCommand::kExtend:
        return "extend";
      case v1::SessionCommand::kStop:
        return "stop";
      case v1::SessionCommand::kPosition:
        return "position";
      default:
        return "invalid";
    }
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

// Accepted.session_id as the engine's id; InvalidArgument naming session_id otherwise.
absl::StatusOr<engine::SessionId> ParseSessionId(const std::string& text) {
  engine::SessionId id = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, id);
  if (text.empty() || ec != std::errc() || ptr != end || id == 0) {
    return absl::InvalidArgumentError(fmt::format(
        "session_id: '{}' is not a session id (the decimal Accepted.session_id of a session)",
        text.size() > 40 ? text.substr(0, 40) + "..." : text));
  }
  return id;
}

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

// ---------------------------------------------------------------------------------------
// HTTP: GET /v1/generate (the same admission as Generate) and GET /v1/sessions/{id}/watch
// (as Watch), the video as the response body.

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kUnimplemented:
      return 501;
    default:
      return 500;
  }
}

http::Response HttpError(const absl::Status& status) {
  http::Response r =
      http::Response::Error(HttpStatusOf(status.code()), absl::StatusCodeToString(status.code()),
                            std::string(status.message()));
  if (absl::IsResourceExhausted(status)) r.headers.emplace_back("Retry-After", "2");
  if (absl::IsUnavailable(status)) r.headers.emplace_back("Retry-After", "1");
  return r;
}

// "127.0.0.1:5555" / "[::1]:5555" as gRPC writes peers, so that --max_sessions_per_peer
// counts a client's HTTP and gRPC sessions together.
std::string GrpcStylePeer(const std::string& peer) {
  return (peer.starts_with('[') ? "ipv6:" : "ipv4:") + peer;
}

// An HTTP response carrying a session's video: the EventWriter of an outbox (GET
// /v1/generate) or a broadcast viewer (GET /v1/sessions/{id}/watch). Video chunks become the
// body (the init segment and the fragments: one fragmented MP4); other events have no place
// in it. A failure before the first byte is a JSON error with the HTTP status of its gRPC
// code; after it, the connection is closed (a truncated body). The source holds a plain
// pointer to this writer, so it keeps itself alive from Attach until it finished or the
// client went away. Writes are serialised by the source (begun_ needs no lock).
class HttpVideoWriter : public EventWriter, public std::enable_shared_from_this<HttpVideoWriter> {
 public:
  HttpVideoWriter(LongSanaService* service, std::shared_ptr<http::ResponseStream> stream,
                  CallIdentity who)
      : who_(std::move(who)), service_(service), stream_(std::move(stream)) {
    service_->StreamOpened();
  }
  ~HttpVideoWriter() override { service_->StreamClosed(); }

  void StartEventWrite(const v1::GenerateEvent* event) override {
    if (!event->has_chunk()) {
      WriteDone(true);  // nothing to send: the next event, at once
      return;
    }
    if (!begun_) {
      begun_ = true;
      stream_->Begin(200, "video/mp4",
                     {{"Cache-Control", "no-store"},
                      {"X-Request-Id", who_.request_id},
                      {"X-Session-Id", std::to_string(id())},
                      {"X-Content-Type-Options", "nosniff"}});
    }
    auto self = shared_from_this();
    stream_->Write(event->chunk().data(), [self](bool ok) { self->WriteDone(ok); });
  }

  void FinishStream(const absl::Status& status) override {
    if (!begun_) {
      stream_->Fail(HttpError(status));
    } else if (status.ok()) {
      stream_->End();
    } else {
      stream_->Abort();
    }
    finished_ = true;
    DetachSource();  // the source writes no more; the response finishes on its own
    Release();
  }

 protected:
  // Called by the subclass once its source exists, before the source writes.
  void Attach() {
    {
      std::lock_guard lock(mu_);
      self_ = shared_from_this();
    }
    std::weak_ptr<HttpVideoWriter> weak = weak_from_this();
    stream_->SetOnClose([weak] {
      if (auto self = weak.lock()) self->ClientGone();
    });
  }
  // A write finished (not ok: the client is gone): hand it to the source.
  virtual void WriteDone(bool ok) = 0;
  // The client went away before the end: stop the source, then Detach it.
  virtual void StopSource() = 0;
  virtual void DetachSource() = 0;
  virtual engine::SessionId id() const = 0;

  std::mutex mu_;  // guards the subclass's source pointers and self_
  const CallIdentity who_;

 private:
  void ClientGone() {
    if (finished_) return;
    StopSource();
    DetachSource();
    Release();
  }
  void Release() {
    std::shared_ptr<HttpVideoWriter> keep;  // destroyed after the lock is released
    std::lock_guard lock(mu_);
    keep = std::move(self_);
    OnRelease();
  }
  virtual void OnRelease() {}  // under mu_

  LongSanaService* const service_;
  const std::shared_ptr<http::ResponseStream> stream_;
  std::shared_ptr<HttpVideoWriter> self_;
  bool begun_ = false;
  std::atomic<bool> finished_{false};
};

// GET /v1/generate: the writer of the session's outbox; a client that goes away (or a write
// that fails) cancels the session.
class HttpGenerateWriter final : public HttpVideoWriter {
 public:
  using HttpVideoWriter::HttpVideoWriter;

  void Attach(std::shared_ptr<engine::Engine> engine, std::shared_ptr<SessionOutbox> outbox,
              engine::SessionId id, PeerSessionLimiter::Lease lease) {
    {
      std::lock_guard lock(mu_);
      engine_ = std::move(engine);
      outbox_ = std::move(outbox);
      id_ = id;
      lease_ = std::move(lease);
    }
    HttpVideoWriter::Attach();
  }

 private:
  std::shared_ptr<SessionOutbox> Outbox() {
    std::lock_guard lock(mu_);
    return outbox_;
  }
  engine::SessionId id() const override { return id_; }
  void WriteDone(bool ok) override {
    if (!ok) Cancel(absl::CancelledError("the client is gone"));
    Outbox()->OnWriteDone(ok);
  }
  void StopSource() override {
    const absl::Status reason = absl::CancelledError("the client is gone");
    Cancel(reason);
    Outbox()->Abort(reason);
  }
  void DetachSource() override { Outbox()->Detach(); }
  void OnRelease() override { lease_ = {}; }  // the peer's slot goes back with the stream
  void Cancel(const absl::Status& reason) {
    std::shared_ptr<engine::Engine> engine;
    {
      std::lock_guard lock(mu_);
      engine = engine_;
    }
    if (engine == nullptr || cancel_sent_.exchange(true) || Outbox()->Ended()) return;
    spdlog::info("{} cancelling: {}", who_.LogTag(id_), reason.ToString());
    engine->Cancel(id_, reason);
  }

  std::shared_ptr<engine::Engine> engine_;
  std::shared_ptr<SessionOutbox> outbox_;
  engine::SessionId id_ = 0;  // set in Attach, before the outbox writes
  PeerSessionLimiter::Lease lease_;
  std::atomic<bool> cancel_sent_{false};
};

// GET /v1/sessions/{id}/watch: the writer of a broadcast viewer (the session's init segment,
// then fragments from its latest keyframe on); the response ends with the session.
class HttpWatchWriter final : public HttpVideoWriter {
 public:
  HttpWatchWriter(LongSanaService* service, std::shared_ptr<http::ResponseStream> stream,
                  CallIdentity who, engine::SessionId id)
      : HttpVideoWriter(service, std::move(stream), std::move(who)), id_(id) {}

  void Attach(std::shared_ptr<BroadcastViewer> viewer) {
    {
      std::lock_guard lock(mu_);
      viewer_ = viewer;
    }
    HttpVideoWriter::Attach();
    spdlog::info("{} watch opened: HTTP watch", who_.LogTag(id_));
    viewer->Start();
  }

 private:
  std::shared_ptr<BroadcastViewer> Viewer() {
    std::lock_guard lock(mu_);
    return viewer_;
  }
  engine::SessionId id() const override { return id_; }
  void WriteDone(bool ok) override { Viewer()->OnWriteDone(ok); }
  void StopSource() override { Viewer()->Abort(absl::CancelledError("the viewer is gone")); }
  void DetachSource() override {
    spdlog::info("{} watch closed", who_.LogTag(id_));
    Viewer()->Detach();
  }

  const engine::SessionId id_;
  std::shared_ptr<BroadcastViewer> viewer_;
};

// Logs and counts an HTTP refusal and answers it (JSON error, the request id echoed).
void RejectHttp(LongSanaService& service, std::string_view route, const CallIdentity& who,
                std::string_view peer, const absl::Status& status, RejectReason reason,
                http::ResponseStream& stream) {
  spdlog::info("{} HTTP {} from {} rejected ({}): {}", who.LogTag(), route, peer,
               RejectReasonName(reason), status.ToString());
  if (service.metrics() != nullptr) service.metrics()->Rejected(reason, who.tenant->name);
  http::Response response = HttpError(status);
  response.headers.emplace_back("X-Request-Id", who.request_id);
  stream.Fail(std::move(response));
}

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

void LongSanaService::HttpGenerate(http::Request request,
                                   std::shared_ptr<http::ResponseStream> stream) {
  CallIdentity who;
  who.request_id = RequestIdOrNew(request.Header("x-request-id"));
  const std::string peer = GrpcStylePeer(request.peer);
  auto reject = [&](const absl::Status& status, RejectReason reason) {
    RejectHttp(*this, "/v1/generate", who, peer, status, reason, *stream);
  };
  auto tenant = Authenticate(request.Header("authorization"));
  if (!tenant.ok()) return reject(tenant.status(), RejectReason::kUnauthenticated);
  who.tenant = *tenant;
  auto generate = GenerateRequestFromQuery(request.query);
  if (!generate.ok()) return reject(generate.status(), RejectReason::kInvalid);
  auto writer = std::make_shared<HttpGenerateWriter>(this, stream, who);
  RejectReason reason = RejectReason::kInvalid;
  auto admitted = AdmitSession(*this, peer, who, *generate, /*interactive=*/false,
                               "HTTP /v1/generate", "", writer.get(), &reason);
  if (!admitted.ok()) return reject(admitted.status(), reason);
  std::shared_ptr<SessionOutbox> outbox = admitted->outbox;
  writer->Attach(std::move(admitted->engine), outbox, admitted->info.id,
                 std::move(admitted->peer_lease));
  outbox->Open(admitted->info);
}

void LongSanaService::HttpWatch(http::Request request,
                                std::shared_ptr<http::ResponseStream> stream) {
  CallIdentity who;
  who.request_id = RequestIdOrNew(request.Header("x-request-id"));
  const std::string peer = GrpcStylePeer(request.peer);
  auto reject = [&](const absl::Status& status, RejectReason reason) {
    RejectHttp(*this, "/v1/sessions/{id}/watch", who, peer, status, reason, *stream);
  };
  auto tenant = Authenticate(request.Header("authorization"));
  if (!tenant.ok()) return reject(tenant.status(), RejectReason::kUnauthenticated);
  who.tenant = *tenant;
  if (auto engine = AcquireEngine(); !engine.ok()) {
    return reject(engine.status(), ReasonOfUnavailable(*this));
  }
  if (!request.query.empty()) {
    return reject(absl::InvalidArgumentError("query: the watch route takes no parameters"),
                  RejectReason::kInvalid);
  }
  auto id = ParseSessionId(request.path_params["id"]);
  if (!id.ok()) return reject(id.status(), RejectReason::kInvalid);
  auto writer = std::make_shared<HttpWatchWriter>(this, stream, who, *id);
  auto viewer = broadcasts()->Join(*id, who.tenant->name, who.request_id, writer.get());
  if (!viewer.ok()) {
    return reject(viewer.status(), absl::IsResourceExhausted(viewer.status())
                                       ? RejectReason::kWatcherLimit
                                       : RejectReason::kNotFound);
  }
  writer->Attach(std::move(*viewer));
}

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
