// A plain <video src="/v1/generate?..."> in headless Chromium (Debian's chromium) plays the
// server's progressive fMP4 to its end; an invalid request is a media error, not a hang. The
// page comes from a test HTTP server on another port (a <video> needs no CORS).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "nlohmann/json.hpp"
#include "server/server.h"
#include "tests/common/temp_dir.h"
#include "tests/media/browser_harness.h"
#include "tests/server/fake_engine.h"
#include "tests/server/server_test_util.h"

namespace longsana::testing {
namespace {

using namespace std::chrono_literals;

constexpr const char* kPage = R"html(<!doctype html>
<html><body><video id="v" muted playsinline></video><script>
const v = document.getElementById('v');
let sent = false;
function report(r) {
  if (sent) return;
  sent = true;
  fetch('/result', {method: 'POST', body: JSON.stringify(r)});
}
v.addEventListener('ended', () => report({ended: true, currentTime: v.currentTime,
                                          width: v.videoWidth, height: v.videoHeight}));
v.addEventListener('error', () => report({error: v.error ? v.error.code : -1}));
setTimeout(() => report({error: 'timeout', currentTime: v.currentTime,
                         readyState: v.readyState}), 60000);
v.src = '__SRC__';
v.playbackRate = 4;
v.play().catch(e => { if (!v.error) report({error: 'play: ' + e}); });
</script></body></html>
)html";

std::string Chromium() {
  const char* path = std::getenv("LONGSANA_CHROMIUM");
  return path != nullptr ? path : "/usr/bin/chromium";
}

// Loads the page with `src` and returns what it reported.
nlohmann::json Play(const std::string& src) {
  std::string page = kPage;
  page.replace(page.find("__SRC__"), 7, src);
  std::mutex mu;
  std::condition_variable cv;
  std::optional<std::string> result;
  HttpTestServer pages([&](const HttpRequest& request) -> HttpResponse {
    if (request.method == "GET" && request.path == "/index.html") {
      return {200, "text/html; charset=utf-8", page};
    }
    if (request.method == "POST" && request.path == "/result") {
      std::lock_guard lock(mu);
      result = request.body;
      cv.notify_all();
      return {200, "text/plain", "ok"};
    }
    return {404, "text/plain", "not found"};
  });
  EXPECT_TRUE(pages.Start().ok());
  TempDir profile, logs;
  auto chromium = ChromiumProcess::Launch(
      Chromium(), fmt::format("http://127.0.0.1:{}/index.html", pages.port()), profile.path(),
      logs.File("chromium.log"));
  EXPECT_TRUE(chromium.ok()) << chromium.status();
  {
    std::unique_lock lock(mu);
    cv.wait_for(lock, 90s, [&] { return result.has_value(); });
  }
  if (chromium.ok()) (*chromium)->Terminate();
  pages.Stop();
  if (!result) return {{"error", "no report from the page"}};
  return nlohmann::json::parse(*result, nullptr, false);
}

TEST(HttpBrowser, AVideoElementPlaysGenerateToTheEndAndABadRequestIsAMediaError) {
  ASSERT_TRUE(std::filesystem::exists(Chromium()))
      << Chromium() << " not found: install Debian's chromium or set LONGSANA_CHROMIUM";
  server::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.http_listen = "127.0.0.1:0";
  auto server = server::Server::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->SetEngine(std::make_shared<FakeEngine>());
  const std::string base = "http://" + (*server)->http_address();

  const nlohmann::json played =
      Play(base + "/v1/generate?prompt=a+red+kite&width=64&height=64&frames=81");
  SCOPED_TRACE(played.dump());
  ASSERT_TRUE(played.value("ended", false));
  EXPECT_EQ(played["width"].get<int>(), 64);
  EXPECT_NEAR(played["currentTime"].get<double>(), 81.0 / 16, 0.1);

  const nlohmann::json refused = Play(base + "/v1/generate?prompt=x&width=7");
  SCOPED_TRACE(refused.dump());
  ASSERT_TRUE(refused.contains("error"));
  EXPECT_TRUE(refused["error"].is_number()) << "a MediaError, not a timeout";
  (*server)->Shutdown(2s);
}

}  // namespace
}  // namespace longsana::testing
