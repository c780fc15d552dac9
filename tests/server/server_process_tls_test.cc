// The operator-facing surface of the server program and the CLI, as processes: TLS and mTLS
// on the gRPC port with certificates made by `openssl` at test time (the CLI and a Python
// client), `longsana health` and its grpc-health-probe exit codes, --token, --help, and the
// config file's errors and precedence. longsana-server-fake is the real server program with
// the FakeEngine.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tests/common/temp_dir.h"
#include "tests/server/server_test_util.h"

#ifndef LONGSANA_SOURCE_DIR
#error "LONGSANA_SOURCE_DIR must be defined by the build"
#endif

namespace longsana::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kServing = 1;
constexpr int kNotServing = 2;

// longsana's output (stdout and stderr) and exit code.
std::string Cli(const std::string& args, int* code) {
  return RunCommand(fmt::format("'{}/longsana' {} 2>&1", BinaryDir(), args), code);
}

// A CA, a second CA the server does not trust, a server certificate for 127.0.0.1 and
// localhost, and client certificates from each CA: PEM files in `dir` (ca.pem, rogue.pem,
// server.pem/.key, client.pem/.key, rogue-client.pem/.key). Empty on success, else the
// failing command's output.
std::string MakeCertificates(const TempDir& dir) {
  const std::string script = R"(set -e
ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$2" -keyout "$1.key" -out "$1.pem"
}
leaf() {  # name, issuing CA, common name, extensions
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$3" \
    -keyout "$1.key" -out "$1.csr"
  printf '%b\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.pem"
}
ca ca 'longsana test CA'
ca rogue 'untrusted CA'
leaf server ca localhost 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'
leaf client ca 'client one' 'extendedKeyUsage=clientAuth'
leaf rogue-client rogue 'client two' 'extendedKeyUsage=clientAuth'
)";
  WriteFile(dir.File("certs.sh"), script);
  int code = -1;
  const std::string out = RunCommand(fmt::format("cd '{}' && sh certs.sh 2>&1", dir.path()), &code);
  return code == 0 ? "" : out;
}

class Tls : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string error = MakeCertificates(dir_);
    ASSERT_EQ(error, "") << error;
  }
  // The fake server with TLS (and mTLS when `mtls`), serving.
  RunningServer Start(bool mtls) {
    std::vector<std::string> flags = {"--http_listen=", "--tls-cert=" + dir_.File("server.pem"),
                                      "--tls-key=" + dir_.File("server.key")};
    if (mtls) flags.push_back("--tls-client-ca=" + dir_.File("ca.pem"));
    RunningServer s = StartServerProcess("longsana-server-fake", FakeFlags(flags), Log());
    if (s.process != nullptr) {
      int code = -1;
      const std::string text =
          Cli(fmt::format("health --server {} {}", s.address, mtls ? ClientCert() : Ca()), &code);
      EXPECT_EQ(code, 0) << text << ReadFile(Log());
    }
    return s;
  }
  std::string Ca() const { return "--ca " + dir_.File("ca.pem"); }
  std::string ClientCert(const std::string& name = "client") const {
    return fmt::format("{} --cert {} --key {}", Ca(), dir_.File(name + ".pem"),
                       dir_.File(name + ".key"));
  }
  std::string Log() const { return dir_.File("server.log"); }
  // tests/server/tls_client.py with `args`; its exit code.
  int Python(const std::string& address, const std::string& args, std::string* out) {
    int code = -1;
    *out = RunCommand(fmt::format("/usr/bin/python3 '{0}/tests/server/tls_client.py' "
                                  "--proto-dir '{0}/proto' --address {1} {2} 2>&1",
                                  LONGSANA_SOURCE_DIR, address, args),
                      &code);
    return code;
  }
  TempDir dir_;
};

TEST_F(Tls, TheCliConnectsWithTheCaAndAPlaintextClientCannot) {
  RunningServer s = Start(/*mtls=*/false);
  ASSERT_NE(s.process, nullptr);
  int code = -1;
  std::string text = Cli(fmt::format("info --server {} {}", s.address, Ca()), &code);
  EXPECT_EQ(code, 0) << text;
  EXPECT_NE(text.find("FakePipeline"), std::string::npos) << text;
  text = Cli(fmt::format("health --server {} {}", s.address, Ca()), &code);
  EXPECT_EQ(code, 0) << text;
  EXPECT_NE(text.find("status: SERVING"), std::string::npos) << text;
  // The certificate names localhost too; --server_name checks another name than the host.
  const std::string port = s.address.substr(s.address.rfind(':') + 1);
  text = Cli(fmt::format("health --server localhost:{} {}", port, Ca()), &code);
  EXPECT_EQ(code, 0) << text;
  text = Cli(fmt::format("health --server {} {} --server_name localhost", s.address, Ca()), &code);
  EXPECT_EQ(code, 0) << text;

  // Observed: a plaintext client never gets a connection to a TLS port (the server drops the
  // non-TLS bytes), so health says "no connection" (2) and an RPC ends UNAVAILABLE.
  text = Cli(fmt::format("health --server {} --timeout 2", s.address), &code);
  EXPECT_EQ(code, 2) << text;
  text = Cli(fmt::format("info --server {} --timeout 5", s.address), &code);
  EXPECT_EQ(code, 10 + 14) << text;
  // The system's CAs do not know the test CA, nor does the untrusted one; a name the
  // certificate does not carry fails the handshake as well.
  text = Cli(fmt::format("health --server {} --tls --timeout 2", s.address), &code);
  EXPECT_EQ(code, 2) << text;
  text =
      Cli(fmt::format("health --server {} --ca {} --timeout 2", s.address, dir_.File("rogue.pem")),
          &code);
  EXPECT_EQ(code, 2) << text;
  text = Cli(
      fmt::format("health --server {} {} --server_name other.example --timeout 2", s.address, Ca()),
      &code);
  EXPECT_EQ(code, 2) << text;
  s.process->Signal(SIGTERM);
  EXPECT_EQ(*s.process->Wait(30s), 0);
  const std::string log = ReadFile(Log());
  EXPECT_NE(log.find("TLS (certificate /CN=localhost"), std::string::npos) << log;
  EXPECT_EQ(log.find("PRIVATE KEY"), std::string::npos) << log;
}

TEST_F(Tls, MutualTlsNeedsAClientCertificateFromTheClientCa) {
  RunningServer s = Start(/*mtls=*/true);
  ASSERT_NE(s.process, nullptr);
  int code = -1;
  std::string text = Cli(fmt::format("info --server {} {}", s.address, ClientCert()), &code);
  EXPECT_EQ(code, 0) << text;
  // Observed: the server refuses the handshake, which the client sees as a connection that
  // never becomes ready (health 2) or UNAVAILABLE (an RPC).
  text = Cli(fmt::format("health --server {} {} --timeout 2", s.address, Ca()), &code);
  EXPECT_EQ(code, 2) << text;
  text = Cli(fmt::format("info --server {} {} --timeout 5", s.address, Ca()), &code);
  EXPECT_EQ(code, 10 + 14) << text;
  text =
      Cli(fmt::format("health --server {} {} --timeout 2", s.address, ClientCert("rogue-client")),
          &code);
  EXPECT_EQ(code, 2) << text;
  text = Cli(fmt::format("info --server {} {} --timeout 5", s.address, ClientCert("rogue-client")),
             &code);
  EXPECT_EQ(code, 10 + 14) << text;
  const std::string log = ReadFile(Log());
  EXPECT_NE(log.find("mTLS: client certificates required"), std::string::npos) << log;
}

TEST_F(Tls, APythonClientConnectsOverTlsAndMutualTls) {
  std::string out;
  {
    RunningServer s = Start(/*mtls=*/false);
    ASSERT_NE(s.process, nullptr);
    EXPECT_EQ(Python(s.address, "--ca " + dir_.File("ca.pem"), &out), 0) << out;
    EXPECT_NE(out.find("GetServerInfo: FakePipeline"), std::string::npos) << out;
    EXPECT_NE(out.find("health: SERVING"), std::string::npos) << out;
  }
  RunningServer s = Start(/*mtls=*/true);
  ASSERT_NE(s.process, nullptr);
  EXPECT_EQ(Python(s.address,
                   fmt::format("--ca {} --cert {} --key {}", dir_.File("ca.pem"),
                               dir_.File("client.pem"), dir_.File("client.key")),
                   &out),
            0)
      << out;
  EXPECT_NE(out.find("health: SERVING"), std::string::npos) << out;
  EXPECT_EQ(Python(s.address, "--expect refused --ca " + dir_.File("ca.pem"), &out), 0) << out;
  EXPECT_NE(out.find("UNAVAILABLE"), std::string::npos) << out;
}

TEST_F(Tls, UnreadableOrMismatchedFilesFailTheStartNamingTheFlag) {
  struct Case {
    std::vector<std::string> flags;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"--tls_cert=" + dir_.File("absent.pem"), "--tls_key=" + dir_.File("server.key")},
       "--tls_cert: cannot read " + dir_.File("absent.pem") + ": No such file or directory"},
      {{"--tls_cert=" + dir_.File("server.pem"), "--tls_key=" + dir_.File("client.key")},
       "--tls_key: " + dir_.File("client.key") + " is not the private key of --tls_cert"},
      {{"--tls_cert=" + dir_.File("server.key"), "--tls_key=" + dir_.File("server.key")},
       "--tls_cert: " + dir_.File("server.key") + " holds no PEM certificate"},
      {{"--tls_cert=" + dir_.File("server.pem"), "--tls_key=" + dir_.File("server.key"),
        "--tls_client_ca=" + dir_.File("nothing.pem")},
       "--tls_client_ca: cannot read"},
      {{"--tls_cert=" + dir_.File("server.pem")}, "--tls_key: TLS needs both"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {BinaryDir() + "/longsana-server-fake", "--model_dir=fake",
                                     "--listen=127.0.0.1:0", "--http_listen="};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    auto p = Subprocess::Start(argv, dir_.File("bad.log"));
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(*(*p)->Wait(30s), 2) << c.expected;
    const std::string log = ReadFile(dir_.File("bad.log"));
    EXPECT_NE(log.find(c.expected), std::string::npos) << log;
  }
}

// ---------------------------------------------------------------------------------------
// `longsana health`: grpc-health-probe's exit codes.

TEST(Health, ExitCodesFollowGrpcHealthProbe) {
  TempDir dir;
  RunningServer s = StartServerProcess("longsana-server-fake",
                                       FakeFlags({"--http_listen=", "--fake_load_ms=2000",
                                                  "--fake_step_ms=100", "--drain_timeout=60"}),
                                       dir.File("server.log"));
  ASSERT_NE(s.process, nullptr);
  int code = -1;
  // Loading: NOT_SERVING.
  std::string text = Cli(fmt::format("health --server {}", s.address), &code);
  EXPECT_EQ(code, 4) << text;
  EXPECT_NE(text.find("status: NOT_SERVING"), std::string::npos) << text;
  auto channel = MakeChannel(s.address);
  ASSERT_TRUE(WaitForHealth(channel, "", kServing, 30s));
  text = Cli(fmt::format("health --server {}", s.address), &code);
  EXPECT_EQ(code, 0) << text;
  text = Cli(fmt::format("health --server {} --service longsana.v1.LongSana", s.address), &code);
  EXPECT_EQ(code, 0) << text;
  text = Cli(fmt::format("health --server {} --service no.such.Service", s.address), &code);
  EXPECT_EQ(code, 4) << text;
  EXPECT_NE(text.find("SERVICE_UNKNOWN"), std::string::npos) << text;
  // A token is accepted (and sent; see Token below) on every command.
  text = Cli(fmt::format("health --server {} --token s3cret-token", s.address), &code);
  EXPECT_EQ(code, 0) << text;
  EXPECT_EQ(text.find("s3cret-token"), std::string::npos) << text;
  text = Cli(fmt::format("health --server {} --cert /only-a-cert.pem", s.address), &code);
  EXPECT_EQ(code, 1) << text;  // usage

  // Draining: a running session keeps the server up while health says NOT_SERVING.
  auto stub = v1::LongSana::NewStub(channel);
  OpenStream stream(*stub, SmallRequest(961), 120s);
  ASSERT_TRUE(stream.ReadUntil([](const v1::GenerateEvent& e) { return e.has_chunk(); }));
  s.process->Signal(SIGTERM);
  ASSERT_TRUE(WaitForHealth(channel, "", kNotServing, 10s));
  text = Cli(fmt::format("health --server {}", s.address), &code);
  EXPECT_EQ(code, 4) << text;
  stream.context.TryCancel();
  stream.Finish();
  EXPECT_EQ(*s.process->Wait(60s), 0);

  // Nothing listening: no connection.
  text = Cli(fmt::format("health --server {} --timeout 1", s.address), &code);
  EXPECT_EQ(code, 2) << text;
  EXPECT_NE(text.find("no connection"), std::string::npos) << text;
}

// A LongSana service that records the authorization metadata of GetServerInfo calls.
class RecordingService final : public v1::LongSana::Service {
 public:
  grpc::Status GetServerInfo(grpc::ServerContext* context, const v1::GetServerInfoRequest*,
                             v1::ServerInfo* info) override {
    std::lock_guard lock(mu_);
    const auto it = context->client_metadata().find("authorization");
    authorization_ = it == context->client_metadata().end()
                         ? ""
                         : std::string(it->second.data(), it->second.size());
    info->set_version("recording");
    return grpc::Status::OK;
  }
  std::string authorization() {
    std::lock_guard lock(mu_);
    return authorization_;
  }

 private:
  std::mutex mu_;
  std::string authorization_;
};

TEST(Token, IsSentAsBearerMetadataFromTheFlagOrTheEnvironment) {
  RecordingService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  const std::string address = fmt::format("127.0.0.1:{}", port);
  int code = -1;
  std::string text = Cli(fmt::format("info --server {} --token tok-123", address), &code);
  EXPECT_EQ(code, 0) << text;
  EXPECT_EQ(service.authorization(), "Bearer tok-123");
  EXPECT_EQ(text.find("tok-123"), std::string::npos) << text;
  text = RunCommand(fmt::format("LONGSANA_TOKEN=from-env '{}/longsana' info --server {} 2>&1",
                                BinaryDir(), address),
                    &code);
  EXPECT_EQ(code, 0) << text;
  EXPECT_EQ(service.authorization(), "Bearer from-env");
  text = RunCommand(fmt::format("LONGSANA_TOKEN=from-env '{}/longsana' info --server {} "
                                "--token from-flag 2>&1",
                                BinaryDir(), address),
                    &code);
  EXPECT_EQ(service.authorization(), "Bearer from-flag");
  text = Cli(fmt::format("info --server {}", address), &code);
  EXPECT_EQ(service.authorization(), "");
  text = Cli(fmt::format("info --server {} --token 'two words'", address), &code);
  EXPECT_EQ(code, 2) << text;
  EXPECT_EQ(text.find("two words"), std::string::npos) << text;
  server->Shutdown();
}

// ---------------------------------------------------------------------------------------
// --help and the config file, through the server program.

TEST(ServerProgram, HelpListsOurFlagsWithTheirDefaults) {
  int code = -1;
  const std::string text =
      RunCommand(fmt::format("'{}/longsana-server-fake' --help 2>&1", BinaryDir()), &code);
  EXPECT_EQ(text.find("No flags matched"), std::string::npos) << text;
  EXPECT_NE(text.find("--config FILE"), std::string::npos) << text;  // the usage line
  for (const std::string flag : {"--model_dir (", "--max_sessions (", "--config (", "--tls_cert (",
                                 "--tls_client_ca (", "--http_listen ("}) {
    const size_t at = text.find(flag);
    ASSERT_NE(at, std::string::npos) << flag << "\n" << text;
    EXPECT_NE(text.find("default: ", at), std::string::npos) << flag;
  }
  const size_t max_sessions = text.find("--max_sessions (");
  EXPECT_NE(text.find("default: 4;", max_sessions), std::string::npos) << text;
  EXPECT_EQ(text.find("--flagfile"), std::string::npos) << "Abseil's own flags are not ours";

  const std::string cli = RunCommand(fmt::format("'{}/longsana' --help 2>&1", BinaryDir()), &code);
  for (const std::string flag : {"--tls (", "--ca (", "--cert (", "--token (", "--service ("}) {
    EXPECT_NE(cli.find(flag), std::string::npos) << flag << "\n" << cli;
  }
  EXPECT_NE(cli.find("longsana health"), std::string::npos) << cli;
}

TEST(ServerProgram, ConfigFileErrorsExitTwoNamingTheKeyAndValue) {
  TempDir dir;
  struct Case {
    std::string yaml;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {"model_dir: fake\nmax-sesions: 3\n",
       {dir.File("c.yaml"), "unknown key 'max-sesions'", "did you mean max_sessions?"}},
      {"model_dir: fake\nmax_sessions: lots\n", {dir.File("c.yaml"), "max_sessions", "'lots'"}},
      {"model_dir: fake\noutbox_chunks: 0\n",
       {"--outbox_chunks:", "--config " + dir.File("c.yaml") + " sets outbox_chunks: '0'"}},
      {"model_dir: fake\nengine:\n  threads: 2\n", {"engine", "nested mappings"}},
  };
  for (const Case& c : cases) {
    WriteFile(dir.File("c.yaml"), c.yaml);
    auto p = Subprocess::Start({BinaryDir() + "/longsana-server-fake", "--listen=127.0.0.1:0",
                                "--http_listen=", "--config", dir.File("c.yaml")},
                               dir.File("c.log"));
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(*(*p)->Wait(30s), 2) << c.yaml;
    const std::string log = ReadFile(dir.File("c.log"));
    for (const std::string& part : c.expected) {
      EXPECT_NE(log.find(part), std::string::npos) << c.yaml << "\n" << log;
    }
  }
}

TEST(ServerProgram, TheConfigFileConfiguresTheServerAndTheCommandLineWins) {
  TempDir dir;
  WriteFile(dir.File("longsana.yaml"),
            "# a config file as an operator writes it\n"
            "model-dir: fake\n"
            "max_sessions: 3\n"
            "max-frames: 161\n"
            "fake_step_ms: 5\n");
  RunningServer s = StartServerProcess(
      "longsana-server-fake", {"--config=" + dir.File("longsana.yaml"), "--max-sessions=2"},
      dir.File("server.log"));
  ASSERT_NE(s.process, nullptr);
  auto channel = MakeChannel(s.address);
  ASSERT_TRUE(WaitForHealth(channel, "", kServing, 30s));
  auto stub = v1::LongSana::NewStub(channel);
  grpc::ClientContext context;
  v1::ServerInfo info;
  ASSERT_TRUE(stub->GetServerInfo(&context, {}, &info).ok());
  EXPECT_EQ(info.capacity().max_sessions(), 2u);    // the command line
  EXPECT_EQ(info.limits().max_num_frames(), 161u);  // the file
  s.process->Signal(SIGTERM);
  EXPECT_EQ(*s.process->Wait(30s), 0);
  const std::string log = ReadFile(dir.File("server.log"));
  EXPECT_NE(
      log.find("--config " + dir.File("longsana.yaml") + ": fake_step_ms, max_frames, model_dir"),
      std::string::npos)
      << log;
}

}  // namespace
}  // namespace longsana::testing
