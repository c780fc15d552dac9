// Tenant tokens: who may call the server, and how much each tenant may use.
//
// The file given by --auth_tokens is YAML:
//
//   tenants:
//     - name: acme                 # [A-Za-z0-9._-]{1,64}; appears in logs and metric labels
//       token_sha256: 5e88...      # hex SHA-256 of the bearer token (preferred), or
//       # token: "s3cr3t-at-least-16-chars"   # the token itself
//       max_sessions: 4            # live sessions (running + queued); 0: unlimited
//       max_queued: 2              # of those, waiting for a slot; 0: unlimited
//       max_priority: 5            # highest GenerateRequest.priority allowed (default 0)
//
// Every RPC but health then needs `authorization: Bearer <token>`. Tokens are kept only as
// SHA-256 digests and compared in constant time against every tenant (no early exit), so
// neither timing nor a memory dump gives a token away; a token never appears in a log line
// or an error message.
//
// Thread-safety: a TenantDirectory is immutable after Load. TenantUsage is thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace longsana::server {

struct TenantQuota {
  int max_sessions = 0;  // live (running + queued) sessions; 0: unlimited
  int max_queued = 0;    // queued sessions; 0: unlimited
  int max_priority = 0;  // highest request priority
};

// What a tenant is using now. Shared by the leases of its sessions.
struct TenantUsage {
  std::atomic<int> sessions{0};
  std::atomic<int> queued{0};
};

struct Tenant {
  std::string name;
  TenantQuota quota;
  std::array<uint8_t, 32> token_sha256{};
  std::shared_ptr<TenantUsage> usage = std::make_shared<TenantUsage>();
};

// The tenant of calls made without tokens configured (quotas unlimited, any priority).
const Tenant& AnonymousTenant();

class TenantDirectory {
 public:
  // Parses the YAML text; InvalidArgument naming `source`, the entry and the key for a bad
  // or unknown key, a duplicate name or token, or a token shorter than 16 bytes.
  static absl::StatusOr<TenantDirectory> Parse(std::string_view yaml, std::string_view source);
  // Reads and parses a file (NotFound / PermissionDenied when it cannot be read).
  static absl::StatusOr<TenantDirectory> Load(const std::string& path);

  // The tenant whose token the `authorization` header value carries ("Bearer <token>").
  // Unauthenticated when the header is missing, malformed or names no tenant (the message
  // never contains the token).
  absl::StatusOr<const Tenant*> Authenticate(std::optional<std::string_view> authorization) const;

  const std::vector<std::unique_ptr<Tenant>>& tenants() const { return tenants_; }

 private:
  std::vector<std::unique_ptr<Tenant>> tenants_;
};

// One live session counted against its tenant's quota; released on destruction or Release()
// (whichever comes first). Thread-safe.
class TenantLease {
 public:
  // Counts a new session against `tenant`: ResourceExhausted (naming the tenant and its
  // limit) when it already has quota.max_sessions live sessions.
  static absl::StatusOr<std::shared_ptr<TenantLease>> Acquire(const Tenant& tenant);
  ~TenantLease();
  TenantLease(const TenantLease&) = delete;
  TenantLease& operator=(const TenantLease&) = delete;

  // The engine queued the session: ResourceExhausted (and nothing counted) when the tenant
  // already has quota.max_queued queued sessions.
  absl::Status MarkQueued();
  // The session left the queue (started or ended).
  void MarkStarted();
  // The session has ended: its quota is free again. Idempotent.
  void Release();

 private:
  TenantLease(std::string tenant, TenantQuota quota, std::shared_ptr<TenantUsage> usage);
  const std::string tenant_;
  const TenantQuota quota_;
  const std::shared_ptr<TenantUsage> usage_;
  // MarkQueued may race with MarkStarted (the engine can start a session before Submit
  // has returned its queue position): one small lock orders the two.
  std::mutex mu_;
  bool queued_ = false;
  bool started_ = false;
  bool released_ = false;
};

// Priority above the tenant's ceiling: PermissionDenied naming the field and the ceiling.
absl::Status CheckPriority(const Tenant& tenant, int priority, std::string_view field);

}  // namespace longsana::server
