// TenantDirectory (the --auth_tokens file), token checks and TenantLease quotas.
#include "server/auth/tenants.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace longsana::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kTokenA = "token-of-acme-0123456789";
constexpr const char* kTokenB = "token-of-beta-0123456789";
// sha256("token-of-beta-0123456789"), as `printf %s TOKEN | sha256sum` prints it.
constexpr const char* kTokenBSha256 =
    "24731337b65cebe5a370c42f013e8c5fcae33c23d4467cf8dc232da277043a6a";

std::string Directory() {
  return std::string(R"(
tenants:
  - name: acme
    token: )") +
         kTokenA + R"(
    max_sessions: 2
    max_queued: 1
    max_priority: 5
  - name: beta
    token: )" +
         kTokenB + R"(
)";
}

TEST(TenantDirectory, ParsesTenantsAndQuotas) {
  auto dir = TenantDirectory::Parse(Directory(), "tokens.yaml");
  ASSERT_TRUE(dir.ok()) << dir.status();
  ASSERT_EQ(dir->tenants().size(), 2u);
  EXPECT_EQ(dir->tenants()[0]->name, "acme");
  EXPECT_EQ(dir->tenants()[0]->quota.max_sessions, 2);
  EXPECT_EQ(dir->tenants()[0]->quota.max_queued, 1);
  EXPECT_EQ(dir->tenants()[0]->quota.max_priority, 5);
  EXPECT_EQ(dir->tenants()[1]->quota.max_sessions, 0);  // unlimited
  EXPECT_EQ(dir->tenants()[1]->quota.max_priority, 0);
}

TEST(TenantDirectory, AuthenticatesBearerTokens) {
  auto dir = TenantDirectory::Parse(Directory(), "tokens.yaml");
  ASSERT_TRUE(dir.ok());
  auto acme = dir->Authenticate(std::string("Bearer ") + kTokenA);
  ASSERT_TRUE(acme.ok()) << acme.status();
  EXPECT_EQ((*acme)->name, "acme");
  auto beta = dir->Authenticate(std::string("bearer ") + kTokenB);  // scheme is case-insensitive
  ASSERT_TRUE(beta.ok());
  EXPECT_EQ((*beta)->name, "beta");

  for (const std::optional<std::string_view> bad :
       {std::optional<std::string_view>(), std::optional<std::string_view>(""),
        std::optional<std::string_view>("Bearer"), std::optional<std::string_view>("Basic abc"),
        std::optional<std::string_view>("Bearer token-of-acme-012345678"),  // one byte short
        std::optional<std::string_view>(kTokenA)}) {                        // no scheme
    auto r = dir->Authenticate(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(r.status().message(), Not(HasSubstr("token-of")));  // never echoes a token
  }
}

TEST(TenantDirectory, AcceptsSha256DigestsAsSha256sumPrintsThem) {
  auto dir = TenantDirectory::Parse(
      std::string("tenants:\n  - name: beta\n    token_sha256: ") + kTokenBSha256 + "\n",
      "tokens.yaml");
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto beta = dir->Authenticate(std::string("Bearer ") + kTokenB);
  ASSERT_TRUE(beta.ok());
  EXPECT_EQ((*beta)->name, "beta");
}

TEST(TenantDirectory, RejectsBadFilesNamingTheEntryAndKey) {
  struct Case {
    std::string yaml;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"tenants: []\n", "tenants: must be a non-empty list"},
      {"tenant:\n  - name: a\n", "tenant: unknown key"},
      {"tenants:\n  - name: a\n    token: short\n", "tenants[0].token: must be at least 16"},
      {"tenants:\n  - name: a\n    token: aaaaaaaaaaaaaaaaaaaa\n    colour: red\n",
       "tenants[0].colour: unknown key"},
      {"tenants:\n  - name: 'a b'\n    token: aaaaaaaaaaaaaaaaaaaa\n", "tenants[0].name"},
      {"tenants:\n  - name: a\n", "tenants[0]: needs a token"},
      {"tenants:\n  - token: aaaaaaaaaaaaaaaaaaaa\n", "tenants[0]: needs a name"},
      {"tenants:\n  - name: a\n    token: aaaaaaaaaaaaaaaaaaaa\n    max_sessions: many\n",
       "tenants[0].max_sessions: 'many' is not an integer"},
      {"tenants:\n  - name: a\n    token: aaaaaaaaaaaaaaaaaaaa\n    max_queued: -1\n",
       "tenants[0].max_queued: must be >= 0"},
      {"tenants:\n  - name: a\n    token: aaaaaaaaaaaaaaaaaaaa\n  - name: a\n    token: "
       "bbbbbbbbbbbbbbbbbbbb\n",
       "tenants[1]: duplicate tenant name 'a'"},
      {"tenants:\n  - name: a\n    token: aaaaaaaaaaaaaaaaaaaa\n  - name: b\n    token: "
       "aaaaaaaaaaaaaaaaaaaa\n",
       "tenants[1]: its token is already another tenant's"},
      {"tenants:\n  - name: a\n    token_sha256: xyz\n", "tenants[0].token_sha256: must be 64 hex"},
      {"tenants: [unclosed\n", "tokens.yaml: yaml:"},
  };
  for (const Case& c : cases) {
    auto dir = TenantDirectory::Parse(c.yaml, "tokens.yaml");
    ASSERT_FALSE(dir.ok()) << c.yaml;
    EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_THAT(dir.status().message(), HasSubstr(c.expected)) << c.yaml;
    EXPECT_THAT(dir.status().message(), Not(HasSubstr("aaaaaaaaaaaaaaaa"))) << c.yaml;
  }
}

TEST(TenantDirectory, LoadNamesTheMissingFile) {
  auto dir = TenantDirectory::Load("/nonexistent/tokens.yaml");
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(dir.status().message(), HasSubstr("--auth_tokens: cannot read /nonexistent"));
}

TEST(TenantLease, CountsLiveAndQueuedSessionsAgainstTheQuota) {
  auto dir = TenantDirectory::Parse(Directory(), "x");
  ASSERT_TRUE(dir.ok());
  const Tenant& acme = *dir->tenants()[0];  // max_sessions 2, max_queued 1
  auto first = TenantLease::Acquire(acme);
  auto second = TenantLease::Acquire(acme);
  ASSERT_TRUE(first.ok() && second.ok());
  auto third = TenantLease::Acquire(acme);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("tenant acme"));
  EXPECT_THAT(third.status().message(), HasSubstr("max_sessions"));

  EXPECT_TRUE((*first)->MarkQueued().ok());
  const absl::Status queued = (*second)->MarkQueued();
  EXPECT_EQ(queued.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(queued.message(), HasSubstr("max_queued"));
  (*first)->MarkStarted();
  EXPECT_TRUE((*second)->MarkQueued().ok());
  EXPECT_EQ(acme.usage->queued.load(), 1);

  (*second)->Release();
  (*second)->Release();  // idempotent
  EXPECT_EQ(acme.usage->queued.load(), 0);
  EXPECT_EQ(acme.usage->sessions.load(), 1);
  EXPECT_TRUE(TenantLease::Acquire(acme).ok());  // a temporary: released at once
  first->reset();
  EXPECT_EQ(acme.usage->sessions.load(), 0);
}

TEST(TenantLease, StartedBeforeMarkedQueuedIsNotCountedAsQueued) {
  auto dir = TenantDirectory::Parse(Directory(), "x");
  ASSERT_TRUE(dir.ok());
  const Tenant& acme = *dir->tenants()[0];
  auto lease = TenantLease::Acquire(acme);
  ASSERT_TRUE(lease.ok());
  (*lease)->MarkStarted();  // the engine started it before Submit returned "queued"
  EXPECT_TRUE((*lease)->MarkQueued().ok());
  EXPECT_EQ(acme.usage->queued.load(), 0);
}

TEST(TenantLease, ConcurrentAcquiresNeverExceedTheQuota) {
  auto dir = TenantDirectory::Parse(
      "tenants:\n  - name: a\n    token: aaaaaaaaaaaaaaaaaaaa\n    max_sessions: 5\n", "x");
  ASSERT_TRUE(dir.ok());
  const Tenant& a = *dir->tenants()[0];
  std::vector<std::shared_ptr<TenantLease>> leases[4];
  std::vector<std::thread> threads;
  for (auto& mine : leases) {
    threads.emplace_back([&a, &mine] {
      for (int i = 0; i < 100; ++i) {
        if (auto l = TenantLease::Acquire(a); l.ok()) mine.push_back(*l);
      }
    });
  }
  for (auto& t : threads) t.join();
  size_t held = 0;
  for (const auto& mine : leases) held += mine.size();
  EXPECT_EQ(held, 5u);
  EXPECT_EQ(a.usage->sessions.load(), 5);
}

TEST(CheckPriority, RefusesPrioritiesAboveTheCeiling) {
  auto dir = TenantDirectory::Parse(Directory(), "x");
  ASSERT_TRUE(dir.ok());
  EXPECT_TRUE(CheckPriority(*dir->tenants()[0], 5, "priority").ok());
  const absl::Status s = CheckPriority(*dir->tenants()[0], 6, "start.priority");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("start.priority: 6 is above tenant acme's ceiling of 5"));
  EXPECT_TRUE(CheckPriority(AnonymousTenant(), 1000, "priority").ok());
}

}  // namespace
}  // namespace longsana::server
