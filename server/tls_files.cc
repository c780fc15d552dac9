#include "server/tls_files.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

namespace longsana::server {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using Cert = std::unique_ptr<X509, X509Free>;
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;

absl::Status Bad(std::string_view flag, std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("--{}: {}", flag, what));
}

absl::StatusOr<std::string> ReadPem(std::string_view flag, const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Bad(flag, fmt::format("cannot read {}: {}", path, std::strerror(EISDIR)));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Bad(flag, fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Bad(flag, fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  std::string pem = std::move(text).str();
  if (pem.empty()) return Bad(flag, fmt::format("{} is empty", path));
  return pem;
}

Bio MemoryBio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The first certificate of a PEM text; nullptr when there is none.
Cert FirstCertificate(const std::string& pem) {
  Bio bio = MemoryBio(pem);
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();  // the thread's OpenSSL error queue must not leak into gRPC's handshakes
  return cert;
}

// A passphrase callback that refuses: an encrypted key fails instead of prompting on a tty.
int NoPassphrase(char*, int, int, void*) { return -1; }

std::string Subject(X509* cert) {
  char buffer[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buffer, sizeof(buffer));
  return buffer;
}

std::string NotAfter(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  ASN1_TIME_print(bio.get(), X509_get0_notAfter(cert));
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

}  // namespace

absl::StatusOr<std::optional<TlsMaterial>> LoadTlsMaterial(const ServerOptions& options) {
  if (options.tls_cert_file.empty()) return std::nullopt;
  TlsMaterial m;
  auto cert_pem = ReadPem("tls_cert", options.tls_cert_file);
  if (!cert_pem.ok()) return cert_pem.status();
  m.cert_chain = std::move(*cert_pem);
  auto key_pem = ReadPem("tls_key", options.tls_key_file);
  if (!key_pem.ok()) return key_pem.status();
  m.private_key = std::move(*key_pem);

  Cert cert = FirstCertificate(m.cert_chain);
  if (cert == nullptr) {
    return Bad("tls_cert", fmt::format("{} holds no PEM certificate", options.tls_cert_file));
  }
  Bio key_bio = MemoryBio(m.private_key);
  Key key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassphrase, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return Bad("tls_key",
               fmt::format("{} holds no unencrypted PEM private key", options.tls_key_file));
  }
  const bool matches = X509_check_private_key(cert.get(), key.get()) == 1;
  ERR_clear_error();
  if (!matches) {
    return Bad("tls_key", fmt::format("{} is not the private key of --tls_cert {}",
                                      options.tls_key_file, options.tls_cert_file));
  }
  m.subject = Subject(cert.get());
  m.not_after = NotAfter(cert.get());
  m.expired = X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0;

  if (!options.tls_client_ca_file.empty()) {
    auto ca_pem = ReadPem("tls_client_ca", options.tls_client_ca_file);
    if (!ca_pem.ok()) return ca_pem.status();
    m.client_ca = std::move(*ca_pem);
    if (FirstCertificate(m.client_ca) == nullptr) {
      return Bad("tls_client_ca",
                 fmt::format("{} holds no PEM certificate", options.tls_client_ca_file));
    }
  }
  return m;
}

}  // namespace longsana::server
