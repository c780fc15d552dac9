#include "server/auth/tenants.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace longsana::server {
namespace {

constexpr size_t kMinTokenBytes = 16;

std::array<uint8_t, 32> Sha256(std::string_view text) {
  std::array<uint8_t, 32> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  return digest;
}

std::optional<std::array<uint8_t, 32>> ParseHexDigest(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  std::array<uint8_t, 32> out{};
  for (size_t i = 0; i < 32; ++i) {
    int value = 0;
    for (const char c : hex.substr(2 * i, 2)) {
      int nibble = 0;
      if (c >= '0' && c <= '9') {
        nibble = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        nibble = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        nibble = c - 'A' + 10;
      } else {
        return std::nullopt;
      }
      value = value * 16 + nibble;
    }
    out[i] = static_cast<uint8_t>(value);
  }
  return out;
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

const Tenant& AnonymousTenant() {
  static const Tenant* const tenant = [] {
    auto* t = new Tenant;
    t->name = "anonymous";
    t->quota.max_priority = 1 << 30;
    return t;
  }();
  return *tenant;
}

absl::StatusOr<TenantDirectory> TenantDirectory::Parse(std::string_view yaml,
                                                       std::string_view source) {
  auto bad = [&](std::string_view where, std::string_view what) {
    return absl::InvalidArgumentError(fmt::format("{}: {}: {}", source, where, what));
  };
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return bad("yaml", e.what());
  }
  if (!root.IsMap()) return bad("top level", "must be a mapping with a `tenants` list");
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>("");
    if (key != "tenants") return bad(key, "unknown key (expected `tenants`)");
  }
  const YAML::Node list = root["tenants"];
  if (!list || !list.IsSequence() || list.size() == 0) {
    return bad("tenants", "must be a non-empty list");
  }
  TenantDirectory dir;
  std::set<std::string> names;
  std::set<std::array<uint8_t, 32>> digests;
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node entry = list[i];
    const std::string where = fmt::format("tenants[{}]", i);
    if (!entry.IsMap()) return bad(where, "must be a mapping");
    auto tenant = std::make_unique<Tenant>();
    bool have_token = false;
    for (const auto& kv : entry) {
      const std::string key = kv.first.as<std::string>("");
      const std::string field = fmt::format("{}.{}", where, key);
      if (!kv.second.IsScalar()) return bad(field, "must be a scalar");
      const std::string value = kv.second.as<std::string>();
      if (key == "name") {
        if (!ValidName(value)) return bad(field, "must match [A-Za-z0-9._-]{1,64}");
        tenant->name = value;
      } else if (key == "token" || key == "token_sha256") {
        if (have_token) return bad(field, "give one of token and token_sha256");
        have_token = true;
        if (key == "token") {
          // Never echo the value: it is a secret.
          if (value.size() < kMinTokenBytes) {
            return bad(field, fmt::format("must be at least {} bytes", kMinTokenBytes));
          }
          tenant->token_sha256 = Sha256(value);
        } else {
          auto digest = ParseHexDigest(value);
          if (!digest) return bad(field, "must be 64 hex digits (a SHA-256)");
          tenant->token_sha256 = *digest;
        }
      } else if (key == "max_sessions" || key == "max_queued" || key == "max_priority") {
        int number = 0;
        try {
          number = kv.second.as<int>();
        } catch (const YAML::Exception&) {
          return bad(field, fmt::format("'{}' is not an integer", value));
        }
        if (key != "max_priority" && number < 0) return bad(field, "must be >= 0 (0: unlimited)");
        if (key == "max_sessions") tenant->quota.max_sessions = number;
        if (key == "max_queued") tenant->quota.max_queued = number;
        if (key == "max_priority") tenant->quota.max_priority = number;
      } else {
        return bad(field,
                   "unknown key (expected name, token or token_sha256, max_sessions, "
                   "max_queued, max_priority)");
      }
    }
    if (tenant->name.empty()) return bad(where, "needs a name");
    if (!have_token) return bad(where, "needs a token or token_sha256");
    if (!names.insert(tenant->name).second) {
      return bad(where, fmt::format("duplicate tenant name '{}'", tenant->name));
    }
    if (!digests.insert(tenant->token_sha256).second) {
      return bad(where, "its token is already another tenant's");
    }
    dir.tenants_.push_back(std::move(tenant));
  }
  return dir;
}

absl::StatusOr<TenantDirectory> TenantDirectory::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string what =
        fmt::format("--auth_tokens: cannot read {}: {}", path, std::strerror(err));
    return err == EACCES ? absl::PermissionDeniedError(what) : absl::NotFoundError(what);
  }
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

absl::StatusOr<const Tenant*> TenantDirectory::Authenticate(
    std::optional<std::string_view> authorization) const {
  if (!authorization.has_value() || authorization->empty()) {
    return absl::UnauthenticatedError(
        "authorization: this server needs a bearer token (metadata `authorization: Bearer "
        "<token>`)");
  }
  std::string_view value = *authorization;
  constexpr std::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !std::equal(kScheme.begin(), kScheme.end(), value.begin(), [](char a, char b) {
        return a == std::tolower(static_cast<unsigned char>(b));
      })) {
    return absl::UnauthenticatedError("authorization: expected `Bearer <token>`");
  }
  value.remove_prefix(kScheme.size());
  const std::array<uint8_t, 32> digest = Sha256(value);
  const Tenant* found = nullptr;
  // Every tenant is compared, whatever matched before: the time does not depend on which.
  for (const auto& tenant : tenants_) {
    const bool equal =
        CRYPTO_memcmp(digest.data(), tenant->token_sha256.data(), digest.size()) == 0;
    if (equal) found = tenant.get();
  }
  if (found == nullptr) return absl::UnauthenticatedError("authorization: unknown token");
  return found;
}

absl::StatusOr<std::shared_ptr<TenantLease>> TenantLease::Acquire(const Tenant& tenant) {
  TenantUsage& usage = *tenant.usage;
  const int limit = tenant.quota.max_sessions;
  int current = usage.sessions.load();
  do {
    if (limit > 0 && current >= limit) {
      return absl::ResourceExhaustedError(fmt::format(
          "quota: tenant {} has {} live sessions, its limit (max_sessions)", tenant.name, limit));
    }
  } while (!usage.sessions.compare_exchange_weak(current, current + 1));
  return std::shared_ptr<TenantLease>(new TenantLease(tenant.name, tenant.quota, tenant.usage));
}

TenantLease::TenantLease(std::string tenant, TenantQuota quota, std::shared_ptr<TenantUsage> usage)
    : tenant_(std::move(tenant)), quota_(quota), usage_(std::move(usage)) {}

TenantLease::~TenantLease() { Release(); }

absl::Status TenantLease::MarkQueued() {
  std::lock_guard lock(mu_);
  if (released_ || queued_ || started_) return absl::OkStatus();
  const int limit = quota_.max_queued;
  int current = usage_->queued.load();
  do {
    if (limit > 0 && current >= limit) {
      return absl::ResourceExhaustedError(
          fmt::format("quota: tenant {} has {} sessions waiting for a slot, its limit (max_queued)",
                      tenant_, limit));
    }
  } while (!usage_->queued.compare_exchange_weak(current, current + 1));
  queued_ = true;
  return absl::OkStatus();
}

void TenantLease::MarkStarted() {
  std::lock_guard lock(mu_);
  started_ = true;
  if (queued_) usage_->queued.fetch_sub(1);
  queued_ = false;
}

void TenantLease::Release() {
  std::lock_guard lock(mu_);
  if (released_) return;
  released_ = true;
  started_ = true;
  if (queued_) usage_->queued.fetch_sub(1);
  queued_ = false;
  usage_->sessions.fetch_sub(1);
}

absl::Status CheckPriority(const Tenant& tenant, int priority, std::string_view field) {
  if (priority <= tenant.quota.max_priority) return absl::OkStatus();
  return absl::PermissionDeniedError(
      fmt::format("{}: {} is above tenant {}'s ceiling of {} (max_priority)", field, priority,
                  tenant.name, tenant.quota.max_priority));
}

}  // namespace longsana::server
