// The PEM files of the gRPC port's TLS (ServerOptions::tls_*_file), read and checked once at
// start so that a wrong path, an empty file, a key that is not the certificate's or an
// encrypted key fail the start with a message naming the flag, instead of gRPC failing the
// bind without a reason or a client failing the handshake later.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "server/server_config.h"

namespace longsana::server {

struct TlsMaterial {
  std::string cert_chain;   // PEM: the server certificate, then any intermediates
  std::string private_key;  // PEM, unencrypted. Never logged.
  std::string client_ca;    // PEM: the CAs client certificates must chain to; empty: no mTLS
  std::string subject;      // the server certificate's subject, for the start log line
  std::string not_after;    // its expiry, e.g. "Jan  2 03:04:05 2026 GMT"
  bool expired = false;     // the certificate's notAfter is in the past
};

// nullopt when `options` configure no TLS (tls_cert_file empty). Otherwise the files' PEM
// contents, or InvalidArgument naming the flag and the file:
//   "--tls_cert: cannot read /x: No such file or directory", "--tls_key: /k is empty",
//   "--tls_cert: /c holds no PEM certificate", "--tls_key: /k is not the private key of
//   --tls_cert /c", "--tls_key: /k holds no unencrypted PEM private key",
//   "--tls_client_ca: /ca holds no PEM certificate".
// An expired certificate is not an error here (the caller warns). Thread-safe.
absl::StatusOr<std::optional<TlsMaterial>> LoadTlsMaterial(const ServerOptions& options);

}  // namespace longsana::server
