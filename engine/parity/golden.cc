#include "engine/parity/golden.h"

#include <algorithm>
#include <iterator>

#include "engine/common/str_util.h"
#include "engine/loader/weights.h"
#include "fmt/format.h"

namespace longsana::engine {

absl::StatusOr<GoldenFile> GoldenFile::Open(const std::string& path) {
  auto ckpt = Checkpoint::OpenFile(path);
  if (!ckpt.ok()) return ckpt.status();
  GoldenFile g;
  g.path_ = path;
  g.checkpoint_ = std::shared_ptr<Checkpoint>(std::move(*ckpt));
  return g;
}

bool GoldenFile::Has(std::string_view name) const { return checkpoint_->Find(name) != nullptr; }

absl::StatusOr<at::Tensor> GoldenFile::Get(std::string_view name) const {
  const Checkpoint::Entry* e = checkpoint_->Find(name);
  if (e == nullptr) {
    return absl::InvalidArgumentError(StrCat(path_, ": golden tensor '", name, "' not found"));
  }
  return LoadTensor(*checkpoint_, *e, ToScalarType(e->info->dtype), at::kCPU);
}

std::vector<std::string> GoldenFile::Names(std::string_view prefix) const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : checkpoint_->entries()) {
    if (std::string_view(name).starts_with(prefix)) out.push_back(name);
  }
  return out;
}

Comparison CompareTensors(std::string name, const at::Tensor& actual, const at::Tensor& expected,
                          const Tolerance& tol) {
  Comparison c;
  c.name = std::move(name);
  if (actual.sizes() != expected.sizes()) {
    c.pass = false;
    c.max_abs = c.max_rel = std::numeric_limits<double>::infinity();
    c.detail = StrCat("shape ", fmt::format("{}", fmt::join(actual.sizes(), "x")), " != expected ",
                      fmt::format("{}", fmt::join(expected.sizes(), "x")));
    return c;
  }
  if (actual.numel() == 0) {
    c.pass = true;
    return c;
  }
  at::Tensor a = actual.detach().to(at::kCPU).to(at::kDouble);
  at::Tensor b = expected.detach().to(at::kCPU).to(at::kDouble);
  at::Tensor diff = (a - b).abs();
  // NaN anywhere fails: a NaN difference makes max() NaN and every comparison false.
  c.max_abs = diff.max().item<double>();
  c.max_rel = (diff / b.abs().clamp_min(1e-6)).max().item<double>();
  const auto ratio = [](double num, double den) {
    if (den > 0.0) return num / den;
    return num == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  };
  c.rel_rms = ratio(diff.norm().item<double>(), b.norm().item<double>());
  c.peak = ratio(c.max_abs, b.abs().max().item<double>());
  switch (tol.kind) {
    case Tolerance::Kind::kExact:
      c.pass = c.max_abs == 0.0;
      break;
    case Tolerance::Kind::kClose:
    case Tolerance::Kind::kCloseToScale: {
      at::Tensor bound = tol.kind == Tolerance::Kind::kClose
                             ? tol.atol + tol.rtol * b.abs()
                             : at::full_like(b, tol.atol + tol.rtol * b.abs().max().item<double>());
      c.pass = (diff <= bound).all().item<bool>();
      if (!c.pass) {
        int64_t bad = (diff > bound).logical_or(diff.isnan()).sum().item<int64_t>();
        c.detail = StrCat(bad, " of ", diff.numel(), " elements outside atol=", tol.atol,
                          " rtol=", tol.rtol,
                          tol.kind == Tolerance::Kind::kCloseToScale ? " x max|expected|" : "");
      }
      break;
    }
    case Tolerance::Kind::kUint8: {
      int64_t off = (diff > 0).sum().item<int64_t>();
      double fraction = static_cast<double>(off) / static_cast<double>(diff.numel());
      c.pass = c.max_abs <= 1.0 && fraction <= tol.max_mismatch_fraction;
      c.detail = fmt::format("{} of {} values differ ({:.4f}%)", off, diff.numel(), 100 * fraction);
      break;
    }
    case Tolerance::Kind::kScaled:
      c.pass = c.rel_rms <= tol.rms && c.peak <= tol.peak;
      c.detail = fmt::format("rel_rms={:.2e} (<= {:.0e}), peak={:.2e} (<= {:.0e})", c.rel_rms,
                             tol.rms, c.peak, tol.peak);
      break;
  }
  if (std::isnan(c.max_abs)) c.pass = false;
  return c;
}

bool ParityReport::ok() const {
  return !rows.empty() &&
         std::all_of(rows.begin(), rows.end(), [](const Comparison& c) { return c.pass; });
}

std::string FormatParityReport(const ParityReport& report) {
  std::string out;
  size_t width = 20;
  for (const auto& r : report.rows) width = std::max(width, r.name.size());
  for (const auto& r : report.rows) {
    fmt::format_to(std::back_inserter(out), "{:<{}}  max_abs={:<12.4e} max_rel={:<12.4e} {}{}\n",
                   r.name, width, r.max_abs, r.max_rel, r.pass ? "PASS" : "FAIL",
                   r.detail.empty() ? "" : "  (" + r.detail + ")");
  }
  fmt::format_to(std::back_inserter(out), "{}: {} ({} tensors)\n", report.component,
                 report.ok() ? "PASS" : "FAIL", report.rows.size());
  return out;
}

}  // namespace longsana::engine
