// The log tag (engine/api/log_tag.h) and the server's text/JSON log formats.
#include "server/logging.h"

#include <gmock/gmock.h>
#include <grpc/support/log.h>
#include <gtest/gtest.h>
#include <spdlog/details/log_msg.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/api/log_tag.h"

namespace longsana::server {
namespace {

using engine::FormatLogTag;
using engine::ParseLogTag;
using ::testing::HasSubstr;

std::string Format(LogFormat format, std::string_view payload,
                   spdlog::level::level_enum level = spdlog::level::info) {
  auto formatter = MakeLogFormatter(format);
  spdlog::details::log_msg msg(spdlog::source_loc{}, "longsana-server", level,
                               spdlog::string_view_t(payload.data(), payload.size()));
  spdlog::memory_buf_t out;
  formatter->format(msg, out);
  return std::string(out.data(), out.size());
}

TEST(LogTag, FormatsKnownFieldsInOrder) {
  EXPECT_EQ(FormatLogTag({42, "acme", "r-1"}), "[session=42 tenant=acme request_id=r-1]");
  EXPECT_EQ(FormatLogTag({0, "acme", "r-1"}), "[tenant=acme request_id=r-1]");
  EXPECT_EQ(FormatLogTag({7, "", ""}), "[session=7]");
  EXPECT_EQ(FormatLogTag({}), "");
  // A value can never break the tag apart.
  EXPECT_EQ(FormatLogTag({0, "a b]c", "x\ny"}), "[tenant=a_b_c request_id=x_y]");
}

TEST(LogTag, ParsesWhatItFormats) {
  const std::string line = FormatLogTag({18446744073709551615ull, "acme", "a=b"}) + " hello";
  auto parsed = ParseLogTag(line);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->fields.session_id, 18446744073709551615ull);
  EXPECT_EQ(parsed->fields.tenant, "acme");
  EXPECT_EQ(parsed->fields.request_id, "a=b");
  EXPECT_EQ(parsed->rest, "hello");
  EXPECT_FALSE(ParseLogTag("[not a tag] x").has_value());
  EXPECT_FALSE(ParseLogTag("[session=12x] x").has_value());
  EXPECT_FALSE(ParseLogTag("plain message").has_value());
  EXPECT_FALSE(ParseLogTag("[] x").has_value());
}

TEST(LogFormat, TextKeepsTheMessageAsWritten) {
  const std::string line = Format(LogFormat::kText, "[session=5 tenant=t] started");
  EXPECT_THAT(line, HasSubstr(" info [session=5 tenant=t] started"));
  EXPECT_EQ(line.back(), '\n');
}

TEST(LogFormat, JsonLiftsTheTagIntoKeys) {
  const std::string line = Format(
      LogFormat::kJson, "[session=5 tenant=acme request_id=r-9] block 3 sent", spdlog::level::warn);
  ASSERT_EQ(line.back(), '\n');
  const auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["logger"], "longsana-server");
  EXPECT_EQ(j["session_id"], "5");
  EXPECT_EQ(j["tenant"], "acme");
  EXPECT_EQ(j["request_id"], "r-9");
  EXPECT_EQ(j["msg"], "block 3 sent");
  const std::string time = j["time"];
  EXPECT_EQ(time.size(), 24u) << time;  // 2026-12-02T01:02:03.456Z
  EXPECT_EQ(time.back(), 'Z');
}

TEST(LogFormat, JsonEscapesAndRepairsAnyMessage) {
  const std::string nasty =
      std::string("quote \" backslash \\ newline \n tab \t bad utf8 \xff\xfe");
  const std::string line = Format(LogFormat::kJson, nasty);
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // one line
  const auto j = nlohmann::json::parse(line);
  const std::string msg = j["msg"];
  EXPECT_THAT(msg, HasSubstr("quote \" backslash \\ newline \n tab \t"));
  EXPECT_THAT(msg, HasSubstr("\xEF\xBF\xBD"));  // U+FFFD for the invalid bytes
  EXPECT_FALSE(j.contains("session_id"));
}

TEST(ConfigureLogging, RoutesGrpcsOwnLinesThroughTheSameSinkAndFormat) {
  std::ostringstream out;
  auto previous = spdlog::default_logger();
  ConfigureLogging(LogLevel::kInfo, LogFormat::kJson,
                   std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  spdlog::info("{} hello", FormatLogTag({9, "t", "r"}));
  gpr_log(GPR_ERROR, "a gRPC error line %d", 7);
  spdlog::set_default_logger(previous);
  std::istringstream lines(out.str());
  std::string line;
  std::vector<nlohmann::json> records;
  while (std::getline(lines, line)) records.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(records.size(), 2u) << out.str();
  EXPECT_EQ(records[0]["session_id"], "9");
  EXPECT_EQ(records[1]["logger"], "grpc");
  EXPECT_EQ(records[1]["level"], "error");
  EXPECT_THAT(records[1]["msg"].get<std::string>(), HasSubstr("a gRPC error line 7"));
}

}  // namespace
}  // namespace longsana::server
