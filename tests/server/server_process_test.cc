// The server program as a subprocess: loading -> serving -> SIGTERM drain -> exit 0, flag
// and load errors; and end to end with the `longsana` CLI writing an MP4 that ffprobe reads.
// longsana-server-fake is the real server program (server/server_main) with the FakeEngine;
// longsana-server (the real engine on the tiny checkpoint) runs when it is built.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/temp_dir.h"
#include "tests/common/testdata.h"
#include "tests/server/server_test_util.h"

namespace longsana::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kServing = 1;
constexpr int kNotServing = 2;

#ifdef LONGSANA_HAVE_ENGINE
// Starts longsana-server (the real engine) on the tiny checkpoint and waits until it serves.
RunningServer StartTinyServer(std::vector<std::string> extra, const TempDir& dir) {
  std::vector<std::string> flags = {"--model-dir=" + TinyModelDir(), "--device=cpu",
                                    "--threads=2", "--caption-len=24"};
  flags.insert(flags.end(), extra.begin(), extra.end());
  RunningServer s = StartServerProcess("longsana-server", flags, dir.File("server.log"));
  if (s.process != nullptr) {
    EXPECT_TRUE(WaitForHealth(MakeChannel(s.address), "", kServing, 300s))
        << ReadFile(dir.File("server.log"));
  }
  return s;
}
#endif

TEST(ServerProcess, LoadingServingThenSigtermDrainsTheRunningSessionAndExitsZero) {
  TempDir dir;
  RunningServer s = StartServerProcess("longsana-server-fake",
                                       FakeFlags({"--fake-load-ms=1500", "--drain-timeout=30"}),
                                       dir.File("server.log"));
  ASSERT_NE(s.process, nullptr);
  auto channel = MakeChannel(s.address);
  auto stub = v1::LongSana::NewStub(channel);

  // Loading: health NOT_SERVING, RPCs UNAVAILABLE "loading".
  EXPECT_EQ(*CheckHealth(channel, ""), kNotServing);
  const StreamResult early = RunGenerate(*stub, SmallRequest(81), 10s);
  EXPECT_EQ(early.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(early.status.error_message().starts_with("loading")) << early.status.error_message();
  ASSERT_TRUE(WaitForHealth(channel, "", kServing, 30s));

  grpc::ClientContext context;
  auto reader = stub->Generate(&context, SmallRequest(481));  // 12 blocks, ~1.2 s
  v1::GenerateEvent e;
  std::vector<v1::GenerateEvent> events;
  while (reader->Read(&e)) {
    events.push_back(e);
    if (e.has_chunk()) break;
  }
  ASSERT_FALSE(events.empty());
  s.process->Signal(SIGTERM);
  EXPECT_TRUE(WaitForHealth(channel, "", kNotServing, 5s));
  const StreamResult late = RunGenerate(*stub, SmallRequest(81), 10s);
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::UNAVAILABLE) << late.status.error_message();

  while (reader->Read(&e)) events.push_back(e);
  const grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(events.back().has_completed());
  EXPECT_EQ(events.back().completed().frames(), 481u);

  auto code = s.process->Wait(30s);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << ReadFile(dir.File("server.log"));
  const std::string log = ReadFile(dir.File("server.log"));
  EXPECT_NE(log.find("received SIGTERM"), std::string::npos) << log;
  EXPECT_EQ(log.find("running through fresh snow"), std::string::npos)
      << "the prompt was logged at INFO";
}

TEST(ServerProcess, SigtermCancelsSessionsLeftAfterTheDrainTimeoutWithUnavailable) {
  TempDir dir;
  RunningServer s = StartServerProcess("longsana-server-fake", FakeFlags({"--drain_timeout=0.3"}),
                                       dir.File("server.log"));
  ASSERT_NE(s.process, nullptr);
  auto channel = MakeChannel(s.address);
  ASSERT_TRUE(WaitForHealth(channel, "", kServing, 30s));
  auto stub = v1::LongSana::NewStub(channel);
  grpc::ClientContext context;
  auto reader = stub->Generate(&context, SmallRequest(961));  // 24 blocks, ~2.4 s
  v1::GenerateEvent e;
  int chunks = 0;
  while (reader->Read(&e)) {
    if (e.has_chunk() && ++chunks == 2) break;
  }
  s.process->Signal(SIGTERM);
  while (reader->Read(&e)) {
  }
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  auto code = s.process->Wait(30s);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << ReadFile(dir.File("server.log"));
}

TEST(ServerProcess, AClientThatDisappearsMidStreamHasItsSessionCancelled) {
  TempDir dir;
  RunningServer s = StartServerProcess("longsana-server-fake", FakeFlags(), dir.File("server.log"));
  ASSERT_NE(s.process, nullptr);
  auto channel = MakeChannel(s.address);
  ASSERT_TRUE(WaitForHealth(channel, "", kServing, 30s));
  auto cli = Subprocess::Start({BinaryDir() + "/longsana", "generate", "a long video", "-o",
                                dir.File("cut.mp4"), "--server", s.address, "--frames", "961"},
                               dir.File("cli.log"));
  ASSERT_TRUE(cli.ok()) << cli.status();
  ASSERT_TRUE((*cli)->WaitForLine("chunk 1:", 30s).ok()) << ReadFile(dir.File("cli.log"));
  (*cli)->Signal(SIGKILL);  // no cancel, no goodbye: the connection just drops
  EXPECT_EQ(*(*cli)->Wait(10s), 128 + SIGKILL);

  auto stub = v1::LongSana::NewStub(channel);
  v1::ServerInfo info;
  const auto end = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < end) {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->GetServerInfo(&ctx, {}, &info).ok());
    // The slot is freed just after the terminal event (the engine releases it next): wait
    // for both.
    if (info.capacity().cancelled() == 1 && info.capacity().running() == 0) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(info.capacity().cancelled(), 1u);
  EXPECT_EQ(info.capacity().running(), 0u);
  EXPECT_EQ(info.capacity().completed(), 0u);
  s.process->Signal(SIGTERM);
  EXPECT_EQ(*s.process->Wait(30s), 0);
  EXPECT_NE(ReadFile(dir.File("server.log")).find("cancelling"), std::string::npos);
}

TEST(ServerProcess, BadFlagsExitTwoAndALoadFailureExitsOne) {
  TempDir dir;
  {
    auto p = Subprocess::Start(
        {BinaryDir() + "/longsana-server-fake", "--model_dir=fake", "--outbox-chunks=0"},
        dir.File("flags.log"));
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(*(*p)->Wait(30s), 2);
    EXPECT_NE(ReadFile(dir.File("flags.log")).find("outbox_chunks"), std::string::npos);
  }
  {
    auto p = Subprocess::Start({BinaryDir() + "/longsana-server-fake"}, dir.File("nomodel.log"));
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(*(*p)->Wait(30s), 2);
    EXPECT_NE(ReadFile(dir.File("nomodel.log")).find("--model_dir"), std::string::npos);
  }
  {
    RunningServer s =
        StartServerProcess("longsana-server-fake", FakeFlags({"--fake_load_error=no such model"}),
                           dir.File("server.log"));
    ASSERT_NE(s.process, nullptr);
    EXPECT_EQ(*s.process->Wait(30s), 1);
    EXPECT_NE(ReadFile(dir.File("server.log")).find("no such model"), std::string::npos);
  }
}

// --check_config: the effective settings of flags over the file, as JSON, opening nothing.
TEST(ServerProcess, CheckConfigPrintsTheEffectiveSettingsAndTheExitDeadline) {
  TempDir dir;
  const std::string config = dir.File("config.yaml");
  WriteFile(config, "model_dir: /models/none\ndrain_timeout: 50\nmax_sessions: 3\n");
  auto p = Subprocess::Start({BinaryDir() + "/longsana-server-fake", "--config=" + config,
                              "--shutdown-grace=7", "--listen=0.0.0.0:1", "--check_config"},
                             dir.File("check.log"));
  ASSERT_TRUE(p.ok());
  auto out = (*p)->WaitForLine("{", 30s);
  ASSERT_TRUE(out.ok()) << out.status() << ReadFile(dir.File("check.log"));
  ASSERT_EQ(*(*p)->Wait(30s), 0) << ReadFile(dir.File("check.log"));
  const auto j = nlohmann::json::parse(*out);
  EXPECT_EQ(j["model_dir"], "/models/none");
  EXPECT_EQ(j["max_sessions"], 3);
  EXPECT_EQ(j["drain_timeout_s"], 50.0);
  EXPECT_EQ(j["shutdown_grace_s"], 7.0);
  EXPECT_EQ(j["exit_deadline_s"], 62.0);  // + the 5 s watchdog margin
  EXPECT_EQ(j["listen"], "0.0.0.0:1");    // not bound: nothing was opened
  EXPECT_EQ(j["device"], "cpu");

  WriteFile(config, "model_dir: /m\ndrain_timeout: -1\n");
  auto bad = Subprocess::Start(
      {BinaryDir() + "/longsana-server-fake", "--config=" + config, "--check_config"},
      dir.File("bad.log"));
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(*(*bad)->Wait(30s), 2);
  EXPECT_NE(ReadFile(dir.File("bad.log")).find("drain_timeout"), std::string::npos);
}

TEST(ServerProcess, ReadyzTurns503AtSigtermBeforeTheGrpcListenerClosesHealthzStaysUp) {
  TempDir dir;
  RunningServer s = StartServerProcess("longsana-server-fake",
                                       FakeFlags({"--drain-timeout=30", "--fake-step-ms=30"}),
                                       dir.File("server.log"));
  ASSERT_NE(s.process, nullptr);
  auto channel = MakeChannel(s.address);
  ASSERT_TRUE(WaitForHealth(channel, "", kServing, 30s));
  EXPECT_EQ(*CheckHealth(channel, "liveness"), kServing);
  auto ready = HttpGet(s.http_address, "/readyz");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->status, 200);

  auto stub = v1::LongSana::NewStub(channel);
  OpenStream stream(*stub, SmallRequest(481));  // 12 blocks of 5 forwards of 30 ms: ~1.8 s
  ASSERT_TRUE(stream.ReadUntil([](const v1::GenerateEvent& e) { return e.has_chunk(); }));
  s.process->Signal(SIGTERM);
  int readyz = 0;
  for (int i = 0; i < 100 && readyz != 503; ++i) {
    auto r = HttpGet(s.http_address, "/readyz");
    ASSERT_TRUE(r.ok()) << r.status();
    readyz = r->status;
    if (readyz != 503) std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(readyz, 503);
  // The gRPC listener is still open (health answers NOT_SERVING), the session still runs,
  // and liveness is fine (gRPC's "liveness", for Kubernetes' probe, and /healthz).
  EXPECT_EQ(*CheckHealth(channel, ""), kNotServing);
  EXPECT_EQ(*CheckHealth(channel, "liveness"), kServing);
  auto live = HttpGet(s.http_address, "/healthz");
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(live->status, 200);
  EXPECT_TRUE(stream.Finish().ok());
  EXPECT_EQ(*s.process->Wait(60s), 0) << ReadFile(dir.File("server.log"));
  EXPECT_FALSE(HttpGet(s.http_address, "/healthz", 2s).ok());  // gone with the process
}

TEST(ServerProcess, JsonLogsParseLineByLineWithSessionTenantAndRequestId) {
  TempDir dir;
  const std::string token = "json-log-token-0123456789";
  WriteFile(dir.File("tokens.yaml"),
            "tenants:\n  - name: acme\n    token: " + token + "\n    max_sessions: 2\n");
  RunningServer s = StartServerProcess("longsana-server-fake",
                                       FakeFlags({"--log-format=json", "--log-level=debug",
                                                  "--auth-tokens=" + dir.File("tokens.yaml")}),
                                       dir.File("server.log"));
  ASSERT_NE(s.process, nullptr);
  auto channel = MakeChannel(s.address);
  ASSERT_TRUE(WaitForHealth(channel, "", kServing, 30s));
  auto stub = v1::LongSana::NewStub(channel);
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    context.AddMetadata("x-request-id", "rid-json-1");
    auto reader = stub->Generate(&context, SmallRequest(81));
    v1::GenerateEvent e;
    while (reader->Read(&e)) {
    }
    ASSERT_TRUE(reader->Finish().ok());
  }
  {
    grpc::ClientContext context;  // no token: rejected, logged with a generated request id
    auto reader = stub->Generate(&context, SmallRequest(81));
    v1::GenerateEvent e;
    while (reader->Read(&e)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  s.process->Signal(SIGTERM);
  ASSERT_EQ(*s.process->Wait(30s), 0);
  const std::string log_path = dir.File("server.log");
  EXPECT_EQ(ReadFile(log_path).find(token), std::string::npos) << "the token was logged";

  // Python's json module, line by line, as a log shipper would read it.
  const std::string script = dir.File("check.py");
  WriteFile(script, R"PY(import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
assert lines, "empty log"
records = [json.loads(l) for l in lines]
for r in records:
    assert {"time", "level", "logger", "msg"} <= r.keys(), r
    if "session_id" in r:
        assert r["tenant"] and r["request_id"], r
mine = [r for r in records if r.get("request_id") == "rid-json-1"]
assert any("session_id" in r for r in mine), "no session line for rid-json-1"
assert all(r["tenant"] == "acme" for r in mine), mine
rejected = [r for r in records if "rejected (unauthenticated)" in r["msg"]]
assert rejected and rejected[0]["tenant"] == "anonymous" and len(rejected[0]["request_id"]) == 32
print(len(records), "records")
)PY");
  int code = -1;
  const std::string out =
      RunCommand(fmt::format("/usr/bin/python3 '{}' '{}' 2>&1", script, log_path), &code);
  EXPECT_EQ(code, 0) << out << "\n" << ReadFile(log_path);
}

// ---------------------------------------------------------------------------------------
// End to end: server binary + CLI binary + ffprobe.

std::string Cli(const std::string& args, int* code) {
  return RunCommand(fmt::format("'{}/longsana' {} 2>&1", BinaryDir(), args), code);
}

TEST(E2E, CliGeneratesAPlayableMp4InfoAndErrorsAgainstTheServerProgram) {
  TempDir dir;
  RunningServer s = StartServerProcess("longsana-server-fake", FakeFlags(), dir.File("server.log"));
  ASSERT_NE(s.process, nullptr);
  ASSERT_TRUE(WaitForHealth(MakeChannel(s.address), "", kServing, 30s));
  const std::string out = dir.File("fox.mp4");
  int code = -1;
  std::string text = Cli(fmt::format("generate 'a fox in the snow' -o '{}' --server {} --width 96 "
                                     "--height 64 --frames 81 --seed 3 --timeout 60",
                                     out, s.address),
                         &code);
  ASSERT_EQ(code, 0) << text;
  EXPECT_NE(text.find("time to first chunk"), std::string::npos) << text;
  EXPECT_NE(text.find("chunk 2: block 2/2"), std::string::npos) << text;  // plain lines
  auto probe = FfprobeVideo(out);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->width, 96);
  EXPECT_EQ(probe->height, 64);
  EXPECT_EQ(probe->frames, 81);

  text = Cli(fmt::format("info --server {}", s.address), &code);
  EXPECT_EQ(code, 0) << text;
  EXPECT_NE(text.find("FakePipeline"), std::string::npos) << text;
  EXPECT_NE(text.find("1 completed"), std::string::npos) << text;

  text = Cli(
      fmt::format("generate 'x' -o '{}' --server {} --width 100", dir.File("bad.mp4"), s.address),
      &code);
  EXPECT_EQ(code, 10 + 3) << text;  // INVALID_ARGUMENT
  EXPECT_NE(text.find("INVALID_ARGUMENT: width:"), std::string::npos) << text;
  EXPECT_FALSE(std::filesystem::exists(dir.File("bad.mp4")));

  text = Cli(fmt::format("session 'a calm sea' -o '{}' --server {} --frames 161 --timeout 60 "
                         "<<'EOF'\na stormy sea\n/extend 3\n/stop\nEOF",
                         dir.File("session.mp4"), s.address),
             &code);
  EXPECT_EQ(code, 0) << text;
  EXPECT_NE(text.find("prompt switch (command 1) takes effect at block"), std::string::npos)
      << text;
  EXPECT_NE(text.find("(command 2) refused: extend.num_frames"), std::string::npos) << text;
  EXPECT_NE(text.find("stop (command 3) takes effect at block"), std::string::npos) << text;
  auto session_probe = FfprobeVideo(dir.File("session.mp4"));
  ASSERT_TRUE(session_probe.ok()) << session_probe.status();
  EXPECT_GE(session_probe->frames, 41);

  s.process->Signal(SIGTERM);
  EXPECT_EQ(*s.process->Wait(30s), 0);
  text = Cli(fmt::format("info --server {}", s.address), &code);
  EXPECT_EQ(code, 10 + 14) << text;  // UNAVAILABLE
}

TEST(E2E, RealServerAndCliOnTheTinyModel) {
#ifndef LONGSANA_HAVE_ENGINE
  GTEST_SKIP() << "longsana-server is not built (no longsana_engine target yet)";
#else
  TempDir dir;
  RunningServer s = StartTinyServer({"--max-frames=161", "--max-sessions=2", "--drain-timeout=60"},
                                    dir);
  ASSERT_NE(s.process, nullptr);
  const std::string out = dir.File("tiny.mp4");
  int code = -1;
  const std::string text = Cli(fmt::format("generate 'a red kite over green hills' -o '{}' "
                                           "--server {} --width 96 --height 64 --frames 41 "
                                           "--seed 5 --timeout 300",
                                           out, s.address),
                               &code);
  ASSERT_EQ(code, 0) << text << ReadFile(dir.File("server.log"));
  auto probe = FfprobeVideo(out);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->codec, "h264");
  EXPECT_EQ(probe->width, 96);
  EXPECT_EQ(probe->height, 64);
  EXPECT_EQ(probe->frames, 41);
  s.process->Signal(SIGTERM);
  EXPECT_EQ(*s.process->Wait(60s), 0) << ReadFile(dir.File("server.log"));
#endif
}

// An interactive live session through the real server and the CLI, paced to real time: a
// prompt typed on stdin becomes visible (the CLI prints when and how far after the player),
// /stop ends the video with Completed, and the file plays.
TEST(E2E, CliLiveSessionSwitchesThePromptAndStops) {
#ifndef LONGSANA_HAVE_ENGINE
  GTEST_SKIP() << "longsana-server is not built (no longsana_engine target yet)";
#else
  TempDir dir;
  RunningServer s = StartTinyServer({"--drain-timeout=30"}, dir);
  ASSERT_NE(s.process, nullptr);
  const std::string out = dir.File("live.mp4");
  int code = -1;
  // stdin: a switch after 2 s, /stop 10 s later (about four 2.5 s blocks), then its end.
  const std::string text = RunCommand(
      fmt::format("(sleep 2; echo 'a blue sea at night'; sleep 10; echo /stop) | '{}/longsana' "
                  "session 'a red kite over green hills' --live --pacing realtime "
                  "--lookahead 2.5 -o '{}' --server {} --width 32 --height 32 --seed 5 "
                  "--timeout 120 2>&1",
                  BinaryDir(), out, s.address),
      &code);
  ASSERT_EQ(code, 0) << text << ReadFile(dir.File("server.log"));
  EXPECT_NE(text.find("prompt switch (command 1) takes effect at block"), std::string::npos)
      << text;
  EXPECT_NE(text.find("prompt switch (command 1) visible at block"), std::string::npos) << text;
  EXPECT_NE(text.find("of video after where the player was"), std::string::npos) << text;
  EXPECT_NE(text.find("stop (command 2) takes effect at block"), std::string::npos) << text;
  auto probe = FfprobeVideo(out);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_GE(probe->frames, 121);  // at least three blocks
  s.process->Signal(SIGTERM);
  EXPECT_EQ(*s.process->Wait(60s), 0) << ReadFile(dir.File("server.log"));
#endif
}

// `longsana bench` against two fake servers, one idle and one overloaded (one slot, no queue,
// forwards slower than real time): the JSON report has every field, its counts add up, and
// the overloaded server shows rejections and viewer stalls while the idle one shows none.
TEST(E2E, BenchReportsCountsLatenciesStallsAndRejectionsPerServer) {
  TempDir dir;
  RunningServer idle =
      StartServerProcess("longsana-server-fake", FakeFlags(), dir.File("idle.log"));
  RunningServer busy =
      StartServerProcess("longsana-server-fake",
                         FakeFlags({"--max-sessions=1", "--queue-size=0", "--fake-step-ms=700"}),
                         dir.File("busy.log"));
  ASSERT_NE(idle.process, nullptr);
  ASSERT_NE(busy.process, nullptr);
  ASSERT_TRUE(WaitForHealth(MakeChannel(idle.address), "", kServing, 30s));
  ASSERT_TRUE(WaitForHealth(MakeChannel(busy.address), "", kServing, 30s));

  int code = -1;
  const std::string text =
      Cli(fmt::format("bench 'a fox in the snow' --server {},{} --sessions 6 --frames 161 "
                      "--mix generate:1,session:1 --switch-every 1 --json --chart '{}' 2>/dev/null",
                      idle.address, busy.address, dir.File("chart.svg")),
          &code);
  ASSERT_EQ(code, 0) << text;
  const nlohmann::json r = nlohmann::json::parse(text, nullptr, false);
  ASSERT_FALSE(r.is_discarded()) << text;
  SCOPED_TRACE(r.dump(2));
  for (const char* key :
       {"sessions", "completed", "rejected", "failed", "rejections_by_code", "failures_by_code",
        "ttfc_seconds", "inter_chunk_gap_seconds", "switch_visible_seconds", "realtime_factor",
        "viewer", "client_cpu_seconds_per_session", "wall_seconds", "servers", "kinds"}) {
    EXPECT_TRUE(r.contains(key)) << key;
  }
  for (const char* key : {"p50", "p90", "p99", "count"}) {
    EXPECT_TRUE(r["ttfc_seconds"].contains(key)) << key;
  }
  EXPECT_EQ(r["sessions"].get<int>(), 6);
  EXPECT_EQ(r["completed"].get<int>() + r["rejected"].get<int>() + r["failed"].get<int>(), 6);
  EXPECT_EQ(r["kinds"]["generate"].get<int>(), 3);
  EXPECT_EQ(r["kinds"]["session"].get<int>(), 3);

  const nlohmann::json& calm = r["servers"][idle.address];
  const nlohmann::json& loaded = r["servers"][busy.address];
  EXPECT_EQ(calm["sessions"].get<int>(), 3);
  EXPECT_EQ(calm["completed"].get<int>(), 3);
  EXPECT_EQ(calm["rejected"].get<int>(), 0);
  EXPECT_EQ(calm["viewer"]["stalls"].get<int>(), 0);
  EXPECT_EQ(calm["viewer"]["deadline_attainment"].get<double>(), 1.0);
  EXPECT_EQ(loaded["sessions"].get<int>(), 3);
  EXPECT_GE(loaded["rejected"].get<int>(), 1);  // one slot, no queue, three at once
  EXPECT_GE(loaded["rejections_by_code"]["RESOURCE_EXHAUSTED"].get<int>(), 1);
  EXPECT_GE(loaded["completed"].get<int>(), 1);
  EXPECT_GE(loaded["viewer"]["stalls"].get<int>(), 1);  // 3.5 s per 2.5 s block
  EXPECT_GT(loaded["viewer"]["stall_seconds"].get<double>(), 0);
  EXPECT_EQ(r["ttfc_seconds"]["count"].get<int>(), r["completed"].get<int>());
  EXPECT_GT(r["switch_visible_seconds"]["count"].get<int>() +
                r["inter_chunk_gap_seconds"]["count"].get<int>(),
            0);
  EXPECT_TRUE(ReadFile(dir.File("chart.svg")).starts_with("<svg"));

  // --balanced: one round_robin channel over both; the busy replica's refusals are retried
  // on the idle one, so every session completes.
  const std::string list = fmt::format("{},{}", idle.address, busy.address);
  const std::string balanced_text = Cli(
      fmt::format("bench --server {} --balanced --sessions 4 --frames 81 --json 2>/dev/null", list),
      &code);
  ASSERT_EQ(code, 0) << balanced_text;
  const nlohmann::json b = nlohmann::json::parse(balanced_text, nullptr, false);
  ASSERT_FALSE(b.is_discarded()) << balanced_text;
  EXPECT_EQ(b["completed"].get<int>(), 4) << b.dump(2);
  EXPECT_EQ(b["rejected"].get<int>(), 0) << b.dump(2);
  EXPECT_TRUE(b["servers"].contains(list)) << b.dump(2);

  // Usage errors name the flag.
  const std::string bad = Cli(fmt::format("bench --server {} --mix warp:1", idle.address), &code);
  EXPECT_EQ(code, 2) << bad;
  EXPECT_NE(bad.find("--mix"), std::string::npos) << bad;
  for (const std::string& wrong : {fmt::format("{},nohostport", idle.address),
                                   fmt::format("{},no-such-host.invalid:1", idle.address),
                                   fmt::format("{},[::1]:5", idle.address)}) {
    const std::string out = Cli(fmt::format("generate x -o /dev/null --server '{}'", wrong), &code);
    EXPECT_EQ(code, 2) << wrong << ": " << out;
    EXPECT_NE(out.find("--server"), std::string::npos) << out;
  }
  idle.process->Signal(SIGTERM);
  busy.process->Signal(SIGTERM);
  EXPECT_EQ(*idle.process->Wait(30s), 0);
  EXPECT_EQ(*busy.process->Wait(30s), 0);
}

// A client example (`example` is its command line) against server `s`: generate writes an
// 81-frame MP4 that ffprobe reads, an interactive session switches and stops (both acks
// printed) and writes a longer one, and a bad request exits 1 naming the field.
void ExpectTheExampleGeneratesAndSteers(const std::string& example, const RunningServer& s,
                                        const TempDir& dir) {
  int code = -1;
  std::string text = RunCommand(
      fmt::format("{} generate --address {} --prompt 'a red kite' --width 64 --height 64 "
                  "--frames 81 -o '{}' 2>&1",
                  example, s.address, dir.File("generate.mp4")),
      &code);
  ASSERT_EQ(code, 0) << text;
  auto probe = FfprobeVideo(dir.File("generate.mp4"));
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->frames, 81);
  EXPECT_EQ(probe->codec, "h264");

  text = RunCommand(fmt::format("{} session --address {} --prompt 'a red kite' --width 64 "
                                "--height 64 --frames 321 -o '{}' 2>&1",
                                example, s.address, dir.File("session.mp4")),
                    &code);
  ASSERT_EQ(code, 0) << text;
  EXPECT_NE(text.find("command 1 takes effect at block"), std::string::npos) << text;
  EXPECT_NE(text.find("command 2 takes effect at block"), std::string::npos) << text;
  probe = FfprobeVideo(dir.File("session.mp4"));
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_GT(probe->frames, 81);

  text = RunCommand(fmt::format("{} generate --address {} --prompt x --width 7 -o '{}' 2>&1",
                                example, s.address, dir.File("bad.mp4")),
                    &code);
  EXPECT_EQ(code, 1) << text;
  EXPECT_NE(text.find("INVALID_ARGUMENT: width"), std::string::npos) << text;
}

// client/examples/python against a server: its stubs are made with the system protoc and
// grpc_python_plugin (the README's commands), Generate writes an MP4 that ffprobe reads, an
// interactive Session switches and stops, and a bad request names the field.
TEST(E2E, PythonExampleGeneratesAndRunsASession) {
  TempDir dir;
  RunningServer s = StartServerProcess("longsana-server-fake", FakeFlags(), dir.File("server.log"));
  ASSERT_NE(s.process, nullptr);
  ASSERT_TRUE(WaitForHealth(MakeChannel(s.address), "", kServing, 30s));
  ExpectTheExampleGeneratesAndSteers(
      fmt::format("/usr/bin/python3 '{}/client/examples/python/longsana_example.py'",
                  LONGSANA_SOURCE_DIR),
      s, dir);
  s.process->Signal(SIGTERM);
  EXPECT_EQ(*s.process->Wait(30s), 0);
}

// client/examples/node against a server: Generate writes an MP4 that ffprobe reads, an
// interactive Session switches and stops, a bad request names the field, and the web-app relay
// serves its page and relays a video that ffprobe reads. The packages come from `npm ci`
// (scripts/deps.sh test).
TEST(E2E, NodeExampleGeneratesRunsASessionAndRelaysToAPage) {
  TempDir dir;
  RunningServer s = StartServerProcess("longsana-server-fake", FakeFlags(), dir.File("server.log"));
  ASSERT_NE(s.process, nullptr);
  ASSERT_TRUE(WaitForHealth(MakeChannel(s.address), "", kServing, 30s));
  const std::string examples = fmt::format("{}/client/examples/node", LONGSANA_SOURCE_DIR);
  ExpectTheExampleGeneratesAndSteers(fmt::format("node '{}/longsana_example.mjs'", examples), s,
                                     dir);

  // The relay: its page, a relayed video, and a refusal as JSON.
  auto relay = Subprocess::Start(
      {"/usr/bin/env", "node", examples + "/relay.mjs", "--grpc", s.address, "--port", "0"},
      dir.File("relay.log"));
  ASSERT_TRUE(relay.ok()) << relay.status();
  auto line = (*relay)->WaitForLine("relay listening on http://", 30s);
  ASSERT_TRUE(line.ok()) << line.status() << ReadFile(dir.File("relay.log"));
  const std::string relay_address = line->substr(std::string("relay listening on http://").size());
  ASSERT_FALSE(relay_address.empty()) << ReadFile(dir.File("relay.log"));
  auto page = HttpGet(relay_address, "/");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<video"), std::string::npos);
  int code = -1;
  const std::string text =
      RunCommand(fmt::format("curl -sS -o '{}' 'http://{}/video?prompt=a+red+kite&width=64&"
                             "height=64&frames=81' 2>&1",
                             dir.File("relayed.mp4"), relay_address),
                 &code);
  ASSERT_EQ(code, 0) << text;
  auto probe = FfprobeVideo(dir.File("relayed.mp4"));
  ASSERT_TRUE(probe.ok()) << probe.status() << ReadFile(dir.File("relay.log"));
  EXPECT_EQ(probe->frames, 81);
  auto refused = HttpGet(relay_address, "/video?prompt=x&width=7");
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(refused->status, 400);
  EXPECT_NE(refused->body.find("width"), std::string::npos) << refused->body;
  (*relay)->Signal(SIGTERM);
  EXPECT_TRUE((*relay)->Wait(10s).ok());
  s.process->Signal(SIGTERM);
  EXPECT_EQ(*s.process->Wait(30s), 0);
}

// The browser API on the real engine (tiny model, one slot): the WebSocket session from
// Node's `ws` (start, switch, extend, stop with acks in order; a refused start; a closed
// socket frees the slot), then the playground in headless Chromium through playwright-core
// (a typed prompt plays to the end, a switch is acknowledged on screen, a plain <video src>
// plays, an invalid request shows the server's message). The screenshot is kept in
// build/artifacts/playground.png.
TEST(E2E, BrowserApiWebSocketAndPlaygroundOnTheRealEngine) {
#ifndef LONGSANA_HAVE_ENGINE
  GTEST_SKIP() << "longsana-server is not built";
#else
  TempDir dir;
  RunningServer s = StartTinyServer({"--max-sessions=1"}, dir);
  ASSERT_NE(s.process, nullptr);
  const std::string js = fmt::format("{}/tests/js", LONGSANA_SOURCE_DIR);
  int code = -1;
  std::string text =
      RunCommand(fmt::format("node '{}/ws_session_test.mjs' {} 2>&1", js, s.http_address), &code);
  EXPECT_EQ(code, 0) << text << "\n" << ReadFile(dir.File("server.log"));
  std::cout << text;
  const std::string screenshot = std::string(LONGSANA_ARTIFACT_DIR) + "/playground.png";
  text = RunCommand(
      fmt::format("node '{}/playground_test.mjs' {} '{}' 2>&1", js, s.http_address, screenshot),
      &code);
  EXPECT_EQ(code, 0) << text << "\n" << ReadFile(dir.File("server.log"));
  std::cout << text;
  EXPECT_TRUE(ReadFile(screenshot).starts_with("\x89PNG"));
  s.process->Signal(SIGTERM);
  EXPECT_EQ(*s.process->Wait(30s), 0);
#endif
}

// Scale-out without a proxy: three replicas of the real engine, 2 slots each and no queue,
// behind one `longsana --server A,B,C` (a round_robin channel; a refused start is retried on
// the next replica). Six concurrent generates all succeed. Then a replica holding a session
// gets SIGTERM: its running session finishes within the drain (the documented behaviour for
// a drain long enough), it exits 0, and generates started meanwhile all land on the others.
TEST(E2E, ThreeReplicasBehindTheMultiServerClientScaleOutAndSurviveASigterm) {
#ifndef LONGSANA_HAVE_ENGINE
  GTEST_SKIP() << "longsana-server is not built";
#else
  TempDir dir;
  std::vector<RunningServer> replicas;
  std::vector<std::string> addresses;
  for (int i = 0; i < 3; ++i) {
    RunningServer s = StartServerProcess(
        "longsana-server",
        {"--model-dir=" + TinyModelDir(), "--device=cpu", "--threads=1", "--caption-len=24",
         "--max-sessions=2", "--queue-size=0", "--drain-timeout=60"},
        dir.File(fmt::format("replica{}.log", i)));
    ASSERT_NE(s.process, nullptr);
    addresses.push_back(s.address);
    replicas.push_back(std::move(s));
  }
  for (const RunningServer& s : replicas) {
    ASSERT_TRUE(WaitForHealth(MakeChannel(s.address), "", kServing, 300s));
  }
  const std::string servers = fmt::format("{}", fmt::join(addresses, ","));
  // "session ID on ipv4:127.0.0.1:PORT: ..." -> the replica's index; -1 if none.
  const auto replica_of = [&](const std::string& line) {
    for (size_t i = 0; i < addresses.size(); ++i) {
      if (line.find(" on ipv4:" + addresses[i] + ":") != std::string::npos) return int(i);
    }
    return -1;
  };
  const auto start_generate = [&](const std::string& name, int frames) {
    auto p = Subprocess::Start({BinaryDir() + "/longsana", "generate", "a lighthouse at dusk", "-o",
                                dir.File(name + ".mp4"), "--server", servers, "--width=64",
                                "--height=64", fmt::format("--frames={}", frames), "--timeout=240"},
                               dir.File(name + ".log"));
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  };

  // 1. Six at once on six slots.
  std::vector<std::unique_ptr<Subprocess> > clients;
  for (int i = 0; i < 6; ++i) clients.push_back(start_generate(fmt::format("a{}", i), 81));
  std::vector<int> served(3, 0);
  for (int i = 0; i < 6; ++i) {
    ASSERT_NE(clients[i], nullptr);
    auto accepted = clients[i]->WaitForLine("session ", 240s);
    ASSERT_TRUE(accepted.ok()) << accepted.status()
                               << ReadFile(dir.File(fmt::format("a{}.log", i)));
    const int r = replica_of(*accepted);
    ASSERT_GE(r, 0) << *accepted;
    served[r]++;
    EXPECT_EQ(*clients[i]->Wait(240s), 0)
        << clients[i]->stdout_text() << ReadFile(dir.File(fmt::format("a{}.log", i)));
    auto probe = FfprobeVideo(dir.File(fmt::format("a{}.mp4", i)));
    ASSERT_TRUE(probe.ok()) << probe.status();
    EXPECT_EQ(probe->frames, 81);
  }
  std::cout << fmt::format("six concurrent generates served per replica: {}\n",
                           fmt::join(served, " / "));
  EXPECT_EQ(std::count(served.begin(), served.end(), 0), 0) << "a replica served none";

  // 2. Two long sessions; SIGTERM a replica that holds one while it runs.
  std::vector<std::unique_ptr<Subprocess> > long_clients;
  std::vector<int> long_replica;
  for (int i = 0; i < 2; ++i) {
    long_clients.push_back(start_generate(fmt::format("long{}", i), 481));
    ASSERT_NE(long_clients.back(), nullptr);
    auto accepted = long_clients.back()->WaitForLine("session ", 240s);
    ASSERT_TRUE(accepted.ok()) << accepted.status();
    long_replica.push_back(replica_of(*accepted));
    ASSERT_GE(long_replica.back(), 0) << *accepted;
  }
  const int drained = long_replica[0];
  ASSERT_TRUE(long_clients[0]->WaitForLine("chunk ", 240s).ok());  // it is generating
  replicas[drained].process->Signal(SIGTERM);
  ASSERT_TRUE(WaitForHealth(MakeChannel(addresses[drained]), "", kNotServing, 30s));
  std::vector<std::unique_ptr<Subprocess> > new_clients;
  for (int i = 0; i < 2; ++i) new_clients.push_back(start_generate(fmt::format("new{}", i), 81));
  for (int i = 0; i < 2; ++i) {
    ASSERT_NE(new_clients[i], nullptr);
    auto accepted = new_clients[i]->WaitForLine("session ", 240s);
    ASSERT_TRUE(accepted.ok()) << accepted.status()
                               << ReadFile(dir.File(fmt::format("new{}.log", i)));
    EXPECT_NE(replica_of(*accepted), drained) << "a new session went to the draining replica";
    EXPECT_EQ(*new_clients[i]->Wait(240s), 0) << ReadFile(dir.File(fmt::format("new{}.log", i)));
  }
  for (int i = 0; i < 2; ++i) {  // the drained replica's session too: it finished in the drain
    EXPECT_EQ(*long_clients[i]->Wait(240s), 0)
        << long_clients[i]->stdout_text() << ReadFile(dir.File(fmt::format("long{}.log", i)));
    auto probe = FfprobeVideo(dir.File(fmt::format("long{}.mp4", i)));
    ASSERT_TRUE(probe.ok()) << probe.status();
    EXPECT_EQ(probe->frames, 481);
  }
  EXPECT_EQ(*replicas[drained].process->Wait(90s), 0)
      << ReadFile(dir.File(fmt::format("replica{}.log", drained)));
  for (RunningServer& s : replicas) {
    if (&s == &replicas[drained]) continue;
    s.process->Signal(SIGTERM);
    EXPECT_EQ(*s.process->Wait(90s), 0);
  }
#endif
}

// SIGTERM with a 320x320 session decoding and another queued, on the real engine: the queued
// one is handed back at once with UNAVAILABLE, the running one ends by the drain timeout,
// and the process exits 0 within drain + grace + 5 s.
TEST(ServerProcess, RealEngineSigtermIsBoundedWithRunningAndQueuedSessions) {
#ifndef LONGSANA_HAVE_ENGINE
  GTEST_SKIP() << "longsana-server is not built";
#else
  TempDir dir;
  RunningServer s =
      StartTinyServer({"--max-sessions=1", "--drain-timeout=2", "--shutdown-grace=1"}, dir);
  ASSERT_NE(s.process, nullptr);
  auto channel = MakeChannel(s.address);
  auto stub = v1::LongSana::NewStub(channel);
  v1::GenerateRequest big = SmallRequest(961);
  big.set_width(320);
  big.set_height(320);
  grpc::ClientContext running_context, queued_context;
  auto running = stub->Generate(&running_context, big);
  v1::GenerateEvent e;
  while (running->Read(&e) && !e.has_chunk()) {
  }
  auto queued = stub->Generate(&queued_context, SmallRequest(81));
  while (queued->Read(&e) && !e.has_accepted()) {
  }
  ASSERT_EQ(e.accepted().queue_position(), 1u);

  const auto sigterm = std::chrono::steady_clock::now();
  s.process->Signal(SIGTERM);
  while (queued->Read(&e)) {
  }
  const grpc::Status queued_status = queued->Finish();
  const double handed_back = std::chrono::duration<double>(
      std::chrono::steady_clock::now() - sigterm).count();
  EXPECT_EQ(queued_status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << queued_status.error_message();
  while (running->Read(&e)) {
  }
  const grpc::Status running_status = running->Finish();
  EXPECT_EQ(running_status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << running_status.error_message();
  auto code = s.process->Wait(2s + 1s + 5s);
  const double exited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - sigterm).count();
  ASSERT_TRUE(code.ok()) << "no exit within drain + grace + 5 s: " << code.status() << "\n"
                         << ReadFile(dir.File("server.log"));
  EXPECT_EQ(*code, 0) << ReadFile(dir.File("server.log"));
  std::printf("SIGTERM -> queued session handed back %.2f s, process exit %.2f s\n",
              handed_back, exited);
#endif
}

}  // namespace
}  // namespace longsana::testing
