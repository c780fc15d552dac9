#include "client/rpc.h"

namespace longsana::client {

namespace v1 = ::longsana::v1;

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

std::shared_ptr<grpc::Channel> MakeChannel(const ConnectionOptions& c) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(c.max_receive_bytes));
  if (!c.tls) return grpc::CreateCustomChannel(c.server, grpc::InsecureChannelCredentials(), args);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = c.ca_pem;
  ssl.pem_cert_chain = c.cert_pem;
  ssl.pem_private_key = c.key_pem;
  if (!c.server_name.empty()) args.SetSslTargetNameOverride(c.server_name);
  return grpc::CreateCustomChannel(c.server, grpc::SslCredentials(ssl), args);
}

std::unique_ptr<v1::LongSana::Stub> Connect(const ConnectionOptions& c) {
  return v1::LongSana::NewStub(MakeChannel(c));
}

std::chrono::system_clock::time_point After(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

// The deadline and the token of every call. The token goes as plain metadata, not as gRPC
// call credentials: those are refused on plaintext channels, and the local demo is one.
void PrepareContext(grpc::ClientContext& context, const ConnectionOptions& c) {
  if (c.timeout_seconds > 0) context.set_deadline(After(c.timeout_seconds));
  if (!c.token.empty()) context.AddMetadata("authorization", "Bearer " + c.token);
}

v1::GenerateRequest BuildRequest(const std::string& prompt, const RequestOptions& o) {
  v1::GenerateRequest r;
  r.set_prompt(prompt);
  r.set_width(static_cast<uint32_t>(o.width));
  r.set_height(static_cast<uint32_t>(o.height));
  if (o.live) {
    r.set_live(true);
  } else if (o.frames > 0) {
    r.set_num_frames(static_cast<uint32_t>(o.frames));
  } else if (o.duration_seconds > 0) {
    r.set_duration_seconds(o.duration_seconds);
  }
  r.set_seed(o.seed);
  for (double t : o.timesteps) r.add_timesteps(t);
  if (o.num_cached_blocks.has_value()) r.set_num_cached_blocks(*o.num_cached_blocks);
  if (o.motion_score.has_value()) r.set_motion_score(*o.motion_score);
  if (o.crf.has_value()) r.mutable_output()->set_crf(static_cast<uint32_t>(*o.crf));
  r.mutable_output()->set_bitrate_bps(static_cast<uint64_t>(o.bitrate_bps));
  r.mutable_output()->set_preset(o.preset);
  if (o.latent_fragments) {
    r.mutable_output()->set_fragments(v1::OutputOptions::FRAGMENTS_PER_LATENT_FRAME);
  }
  r.set_priority(o.priority);
  if (o.pacing == "realtime") {
    r.set_pacing(v1::GenerateRequest::PACING_REALTIME);
  } else if (o.pacing == "fast") {
    r.set_pacing(v1::GenerateRequest::PACING_AS_FAST_AS_POSSIBLE);
  }
  r.set_lookahead_seconds(o.lookahead_seconds);
  return r;
}

}  // namespace longsana::client
