// Golden tensor files (safetensors written by the reference implementation) and tolerance
// comparison. Shared by the `longsana-parity` tool and the parity tests: one code path.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/loader/checkpoint.h"

namespace longsana::engine {

// Read-only access to the tensors of one golden file, on CPU in their stored dtype.
class GoldenFile {
 public:
  static absl::StatusOr<GoldenFile> Open(const std::string& path);

  bool Has(std::string_view name) const;
  // InvalidArgument naming the file and the tensor when absent.
  absl::StatusOr<at::Tensor> Get(std::string_view name) const;
  // Names starting with `prefix`, sorted.
  std::vector<std::string> Names(std::string_view prefix = "") const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::shared_ptr<Checkpoint> checkpoint_;
};

struct Tolerance {
  enum class Kind {
    kClose,  // |a - b| <= atol + rtol * |b| everywhere
    // |a - b| <= atol + rtol * max|b| everywhere: for sums such as the linear-attention state
    // S, whose small entries come out of the cancellation of large terms (GOLDENS.md §5:
    // "compare state/*/S relative to its magnitude").
    kCloseToScale,
    kExact,  // bitwise-equal values (integers)
    kUint8,  // |a - b| <= 1 everywhere and != on at most `max_mismatch_fraction` of elements
    // Relative to the tensor's own scale, for reduced precision against an fp32 golden:
    // ||a - b||_2 / ||b||_2 <= rms and max|a - b| / max|b| <= peak. Elementwise bounds do not
    // fit there: a bf16 rounding of a large value is larger than a small value.
    kScaled,
  };
  Kind kind = Kind::kClose;
  double atol = 0.0;
  double rtol = 0.0;
  double max_mismatch_fraction = 0.0;
  double rms = 0.0, peak = 0.0;  // kScaled

  static Tolerance Close(double atol, double rtol) { return {Kind::kClose, atol, rtol}; }
  static Tolerance CloseToScale(double atol, double rtol) {
    return {Kind::kCloseToScale, atol, rtol};
  }
  static Tolerance Exact() { return {Kind::kExact}; }
  static Tolerance Uint8(double fraction) { return {Kind::kUint8, 0.0, 0.0, fraction}; }
  static Tolerance Scaled(double rms, double peak) {
    return {Kind::kScaled, 0.0, 0.0, 0.0, rms, peak};
  }
};

struct Comparison {
  std::string name;
  double max_abs = 0.0;
  double max_rel = 0.0;  // max |a - b| / max(|b|, 1e-6)
  double rel_rms = 0.0;  // ||a - b||_2 / ||b||_2 (b all zero: 0 if a == b, else inf)
  double peak = 0.0;     // max |a - b| / max |b| (same convention)
  bool pass = false;
  std::string detail;  // shape mismatch, mismatch fraction, ...
};

// Compares on CPU in float64. Shapes must match exactly.
Comparison CompareTensors(std::string name, const at::Tensor& actual, const at::Tensor& expected,
                          const Tolerance& tolerance);

struct ParityReport {
  std::string component;
  std::vector<Comparison> rows;
  bool ok() const;
  void Add(Comparison c) { rows.push_back(std::move(c)); }
};

// One line per tensor: name, max abs error, max rel error, PASS/FAIL (+ detail).
std::string FormatParityReport(const ParityReport& report);

}  // namespace longsana::engine
