// The encoder's chunks played by a real browser: headless Chromium loads a page from an HTTP
// server in this process (127.0.0.1, random port), fetches the chunks one by one, appends
// them to a MediaSource SourceBuffer, plays to the end and POSTs back what it saw
// (videoWidth/Height, decoded frame count, buffered ranges after every append, any
// MediaError, and the pixels of the last frame).
//
// Needs /usr/bin/chromium (Debian package `chromium`; CI installs it) or the binary named by
// LONGSANA_CHROMIUM. Without it the test fails rather than skips: CI must not pass silently.
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "engine/common/str_util.h"
#include "engine/media/fmp4_encoder.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/temp_dir.h"
#include "tests/media/browser_harness.h"
#include "tests/media/media_test_util.h"

namespace longsana::testing {
namespace {

using engine::EncoderSettings;
using nlohmann::json;

constexpr int kWidth = 320;
constexpr int kHeight = 192;
constexpr int kFps = 16;
const std::vector<int> kBlocks = {17, 16, 16};  // 1 + 4 (T - 1) frames, then 16 per block
constexpr auto kBrowserTimeout = std::chrono::seconds(120);

// The page. __CONFIG__ is replaced by {chunks: [urls], mime, playbackRate}.
constexpr const char* kPage = R"html(<!doctype html>
<html><head><meta charset="utf-8"><title>fmp4 playback</title></head>
<body><video id="video" muted playsinline></video><canvas id="canvas"></canvas>
<script>
const config = __CONFIG__;
let reported = false;
async function report(result) {
  if (reported) return;
  reported = true;
  await fetch('/result', {method: 'POST', body: JSON.stringify(result)});
}
function ranges(r) {
  const out = [];
  for (let i = 0; i < r.length; ++i) out.push([r.start(i), r.end(i)]);
  return out;
}
function mediaError(video) {
  return video.error ? {code: video.error.code, message: video.error.message} : null;
}
const video = document.getElementById('video');
window.addEventListener('error', e => report({error: 'window error: ' + e.message}));
window.addEventListener('unhandledrejection',
                        e => report({error: 'unhandled rejection: ' + e.reason}));
setTimeout(() => report({error: 'page watchdog: playback did not finish in 60 s',
                         currentTime: video.currentTime, readyState: video.readyState,
                         buffered: ranges(video.buffered), mediaError: mediaError(video)}),
           60000);

async function main() {
  const result = {typeSupported: MediaSource.isTypeSupported(config.mime), mime: config.mime};
  if (!result.typeSupported) {
    result.error = 'MediaSource.isTypeSupported is false for ' + config.mime;
    return report(result);
  }
  const source = new MediaSource();
  video.src = URL.createObjectURL(source);
  await new Promise(resolve => source.addEventListener('sourceopen', resolve, {once: true}));
  const buffer = source.addSourceBuffer(config.mime);
  result.bufferedAfterEach = [];
  for (const url of config.chunks) {
    const response = await fetch(url);
    if (!response.ok) throw new Error('GET ' + url + ' -> ' + response.status);
    const bytes = await response.arrayBuffer();
    await new Promise((resolve, reject) => {
      const onError = () => reject(new Error('SourceBuffer error appending ' + url + ': ' +
                                             JSON.stringify(mediaError(video))));
      buffer.addEventListener('error', onError, {once: true});
      buffer.addEventListener('updateend', () => {
        buffer.removeEventListener('error', onError);
        resolve();
      }, {once: true});
      buffer.appendBuffer(bytes);
    });
    result.bufferedAfterEach.push(ranges(buffer.buffered));
  }
  source.endOfStream();
  result.duration = source.duration;
  result.buffered = ranges(video.buffered);
  // A late joiner has no data at time 0: start where its first fragment starts.
  if (video.buffered.length > 0 && video.buffered.start(0) > 0) {
    video.currentTime = video.buffered.start(0);
    await new Promise(resolve => video.addEventListener('seeked', resolve, {once: true}));
  }
  const ended = new Promise((resolve, reject) => {
    video.addEventListener('ended', resolve, {once: true});
    video.addEventListener('error', () => reject(new Error(
        'video error: ' + JSON.stringify(mediaError(video)))), {once: true});
  });
  video.playbackRate = config.playbackRate;
  await video.play();
  await ended;
  const quality = video.getVideoPlaybackQuality();
  result.videoWidth = video.videoWidth;
  result.videoHeight = video.videoHeight;
  result.totalVideoFrames = quality.totalVideoFrames;
  result.droppedVideoFrames = quality.droppedVideoFrames;
  result.currentTime = video.currentTime;
  result.mediaError = mediaError(video);
  // The frame on screen after 'ended' is the last one: send its pixels (RGBA).
  const canvas = document.getElementById('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext('2d', {willReadFrequently: true});
  context.drawImage(video, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  await fetch('/frame', {method: 'POST', body: pixels});
  await report(result);
}
main().catch(e => report({error: String(e && e.stack ? e.stack : e),
                          mediaError: mediaError(video)}));
</script></body></html>
)html";

std::string ChromiumBinary() {
  const char* override_path = std::getenv("LONGSANA_CHROMIUM");
  return override_path != nullptr ? override_path : "/usr/bin/chromium";
}

// What the page reported.
struct PageReport {
  json result;
  std::string last_frame_rgba;
};

// Serves `chunks` (as /chunk/0, /chunk/1, ...) and the page, runs Chromium on it and waits
// for the page's report.
absl::StatusOr<PageReport> PlayInChromium(const std::vector<std::string>& chunks,
                                          const std::string& mime) {
  json config;
  config["mime"] = mime;
  config["playbackRate"] = 2;
  config["chunks"] = json::array();
  for (size_t i = 0; i < chunks.size(); ++i) config["chunks"].push_back(StrCat("/chunk/", i));
  std::string page = kPage;
  page.replace(page.find("__CONFIG__"), 10, config.dump());

  std::mutex mu;
  std::condition_variable reported;
  std::optional<std::string> result_body;
  std::string frame_body;
  std::vector<std::string> requests;
  HttpTestServer server([&](const HttpRequest& request) -> HttpResponse {
    {
      std::lock_guard<std::mutex> lock(mu);
      requests.push_back(request.method + " " + request.path);
    }
    if (request.method == "GET" && request.path == "/index.html") {
      return {200, "text/html; charset=utf-8", page};
    }
    if (request.method == "GET" && request.path.rfind("/chunk/", 0) == 0) {
      const size_t index = std::strtoul(request.path.c_str() + 7, nullptr, 10);
      if (index < chunks.size()) return {200, "video/mp4", chunks[index]};
    }
    if (request.method == "POST" && request.path == "/frame") {
      std::lock_guard<std::mutex> lock(mu);
      frame_body = request.body;
      return {200, "text/plain", "ok"};
    }
    if (request.method == "POST" && request.path == "/result") {
      std::lock_guard<std::mutex> lock(mu);
      if (!result_body.has_value()) result_body = request.body;
      reported.notify_all();
      return {200, "text/plain", "ok"};
    }
    return {404, "text/plain", "not found"};
  });
  if (absl::Status started = server.Start(); !started.ok()) return started;

  TempDir profile;
  TempDir logs;
  const std::string log_path = logs.File("chromium.log");
  const std::string url = StrCat("http://127.0.0.1:", server.port(), "/index.html");
  absl::StatusOr<std::unique_ptr<ChromiumProcess>> chromium =
      ChromiumProcess::Launch(ChromiumBinary(), url, profile.path(), log_path);
  if (!chromium.ok()) return chromium.status();

  const auto deadline = std::chrono::steady_clock::now() + kBrowserTimeout;
  std::string failure;
  {
    std::unique_lock<std::mutex> lock(mu);
    while (!result_body.has_value()) {
      std::string exit_description;
      if ((*chromium)->Exited(&exit_description)) {
        failure = StrCat("chromium ", exit_description, " before the page reported");
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        failure = StrCat("no report from the page within ",
                         std::chrono::seconds(kBrowserTimeout).count(), " s");
        break;
      }
      reported.wait_for(lock, std::chrono::milliseconds(200));
    }
  }
  (*chromium)->Terminate();
  server.Stop();
  if (!failure.empty()) {
    return absl::DeadlineExceededError(StrCat(failure, "; requests served: [",
                                              StrJoin(requests, ", "), "]; chromium log tail:\n",
                                              FileTail(log_path, 4000)));
  }
  PageReport report;
  report.result = json::parse(*result_body, nullptr, /*allow_exceptions=*/false);
  if (report.result.is_discarded()) {
    return absl::InternalError(StrCat("page reported invalid JSON: ", *result_body));
  }
  report.last_frame_rgba = std::move(frame_body);
  return report;
}

class BrowserPlaybackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(ChromiumBinary())) {
      FAIL() << ChromiumBinary()
             << " not found: install Debian's chromium (DEBIAN_FRONTEND=noninteractive apt-get "
                "install -y --no-install-recommends chromium) or set LONGSANA_CHROMIUM";
    }
    EncoderSettings settings;
    settings.width = kWidth;
    settings.height = kHeight;
    settings.fps = kFps;
    absl::StatusOr<EncodedStream> stream = EncodeTestStream(settings, kBlocks);
    ASSERT_TRUE(stream.ok()) << stream.status();
    stream_ = std::move(*stream);
    mime_ = stream_.mime_type;
  }

  // Checks the report of a playback of fragments first_block.. (after the init segment).
  void ExpectPlayed(const PageReport& report, size_t first_block) {
    const json& r = report.result;
    SCOPED_TRACE(r.dump());
    ASSERT_FALSE(r.contains("error")) << r["error"];
    EXPECT_TRUE(r["typeSupported"].get<bool>()) << mime_;
    EXPECT_TRUE(r["mediaError"].is_null());
    EXPECT_EQ(r["videoWidth"].get<int>(), kWidth);
    EXPECT_EQ(r["videoHeight"].get<int>(), kHeight);

    const int64_t first_frame = stream_.fragments[first_block].first_frame;
    const int64_t total_frames = static_cast<int64_t>(stream_.input_frames.size());
    // Every frame of the played fragments was decoded (dropped frames count as decoded).
    EXPECT_EQ(r["totalVideoFrames"].get<int64_t>(), total_frames - first_frame);

    // Continuous timestamps: after every append the buffer is one range that ends where the
    // appended fragment ends.
    constexpr double kTolerance = 1e-3;
    const json& after_each = r["bufferedAfterEach"];
    const size_t media_chunks = stream_.fragments.size() - first_block;
    ASSERT_EQ(after_each.size(), media_chunks + (first_block > 0 ? 1 : 0));
    for (size_t i = 0; i < media_chunks; ++i) {
      const json& ranges = after_each[after_each.size() - media_chunks + i];
      ASSERT_EQ(ranges.size(), 1u) << "after fragment " << first_block + i;
      const engine::EncodedFragment& fragment = stream_.fragments[first_block + i];
      EXPECT_NEAR(ranges[0][0].get<double>(), static_cast<double>(first_frame) / kFps, kTolerance);
      EXPECT_NEAR(ranges[0][1].get<double>(), fragment.start_seconds + fragment.duration_seconds,
                  kTolerance);
    }
    EXPECT_NEAR(r["duration"].get<double>(), static_cast<double>(total_frames) / kFps, kTolerance);

    // The last frame on screen is the last input frame (colour matrix and range included).
    ASSERT_EQ(report.last_frame_rgba.size(), static_cast<size_t>(kWidth) * kHeight * 4);
    std::vector<uint8_t> rgb(static_cast<size_t>(kWidth) * kHeight * 3);
    for (size_t p = 0; p < static_cast<size_t>(kWidth) * kHeight; ++p) {
      for (int c = 0; c < 3; ++c) {
        rgb[3 * p + c] = static_cast<uint8_t>(report.last_frame_rgba[4 * p + c]);
      }
    }
    const double psnr_last = Psnr(rgb, stream_.input_frames.back());
    const double psnr_previous = Psnr(rgb, stream_.input_frames[stream_.input_frames.size() - 2]);
    std::printf(
        "browser: %lld frames decoded (%lld dropped), last frame PSNR %.2f dB "
        "(vs previous input frame %.2f dB)\n",
        static_cast<long long>(r["totalVideoFrames"].get<int64_t>()),
        static_cast<long long>(r["droppedVideoFrames"].get<int64_t>()), psnr_last, psnr_previous);
    EXPECT_GE(psnr_last, 30.0);
    EXPECT_GT(psnr_last, psnr_previous);
  }

  EncodedStream stream_;
  std::string mime_;
};

TEST_F(BrowserPlaybackTest, WholeStreamWithInitSegmentPrependedToTheFirstFragment) {
  std::vector<std::string> chunks;
  chunks.push_back(stream_.init_segment + stream_.fragments[0].bytes);
  for (size_t i = 1; i < stream_.fragments.size(); ++i)
    chunks.push_back(stream_.fragments[i].bytes);
  absl::StatusOr<PageReport> report = PlayInChromium(chunks, mime_);
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectPlayed(*report, 0);
}

TEST_F(BrowserPlaybackTest, OneFragmentPerLatentFrame) {
  EncoderSettings settings;
  settings.width = kWidth;
  settings.height = kHeight;
  settings.fps = kFps;
  absl::StatusOr<EncodedStream> stream = EncodeTestStream(settings, kBlocks, /*fragment_frames=*/4);
  ASSERT_TRUE(stream.ok()) << stream.status();
  stream_ = std::move(*stream);
  ASSERT_EQ(stream_.fragments.size(), 13u);  // 1 + 4 x 4, then 4 x 4 twice
  std::vector<std::string> chunks = {stream_.init_segment + stream_.fragments[0].bytes};
  for (size_t i = 1; i < stream_.fragments.size(); ++i)
    chunks.push_back(stream_.fragments[i].bytes);
  absl::StatusOr<PageReport> report = PlayInChromium(chunks, mime_);
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectPlayed(*report, 0);
}

TEST_F(BrowserPlaybackTest, LateJoinerWithSeparateInitSegment) {
  std::vector<std::string> chunks = {stream_.init_segment};
  for (size_t i = 1; i < stream_.fragments.size(); ++i)
    chunks.push_back(stream_.fragments[i].bytes);
  absl::StatusOr<PageReport> report = PlayInChromium(chunks, mime_);
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectPlayed(*report, 1);
}

}  // namespace
}  // namespace longsana::testing
