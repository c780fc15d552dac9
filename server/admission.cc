#include "server/admission.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <utility>

#include "server/proto_mapping.h"

namespace longsana::server {

RejectReason ReasonOfUnavailable(const LongSanaService& service) {
  return service.phase() == ServingPhase::kDraining ? RejectReason::kDraining
                                                    : RejectReason::kUnavailable;
}

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

absl::Status FirstCommandNotStartError() {
  return absl::InvalidArgumentError(
      "command: the first command must be `start` (a GenerateRequest)");
}

absl::Status StartedTwiceError() {
  return absl::InvalidArgumentError(
      "start: the session has already started; later commands are switch_prompt, extend, "
      "position or stop");
}

std::string_view SessionCommandType(const v1::SessionCommand& command) {
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

void SendSessionCommand(LongSanaService& service, engine::Engine& engine, engine::SessionId id,
                        const CallIdentity& who, SessionOutbox& outbox,
                        const v1::SessionCommand& command) {
  const uint64_t command_id = command.command_id();
  auto ack = engine.Command(id, command_id, ToEngineCommand(command, service.limits()));
  if (service.metrics() != nullptr) {
    service.metrics()->Command(SessionCommandType(command), ack.ok() && ack->status.ok());
  }
  if (!ack.ok()) {
    spdlog::info("{} command {} refused: {}", who.LogTag(id), command_id, ack.status().ToString());
    // NotFound: the session has ended, so no ack of an earlier command is still to come.
    if (absl::IsNotFound(ack.status())) outbox.PushCommandAck(ErrorAck(command_id, ack.status()));
  }
}

}  // namespace longsana::server
