// longsana-random-model: writes a complete model folder in the diffusers layout with random
// weights for the given component configs (default: the real LongSANA 2B configs), so the
// engine and the server can be measured at the real size where no checkpoint can be had.
// The tokenizer, scheduler and model_index.json come from --like (default: the tiny model;
// its token ids are valid rows of any larger vocabulary). Timings do not depend on the values.
//
//   longsana-random-model --out DIR [--configs DIR] [--like DIR] [--seed N]
//
// Weights: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's default init), norm weights 1
// (Gemma's, stored as w in (1 + w), 0); the DiT and Gemma in bf16, the VAE in fp32, as the
// released checkpoints are. Each safetensors file is written tensor by tensor (memory: one
// tensor at a time; the 2B folder is ~10 GB).
#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/loader/param_spec.h"
#include "engine/models/gemma2/gemma2_config.h"
#include "engine/models/gemma2/gemma2_params.h"
#include "engine/models/longsana_dit/dit_config.h"
#include "engine/models/longsana_dit/dit_params.h"
#include "engine/models/wan_vae/wan_vae_config.h"
#include "engine/models/wan_vae/wan_vae_params.h"
#include "tools/common/safetensors_out.h"

ABSL_FLAG(std::string, out, "", "the model folder to write (created; must not exist)");
ABSL_FLAG(std::string, configs, LONGSANA_SOURCE_DIR "/tests/testdata/longsana-2b-configs",
          "folder with transformer/, text_encoder/ and vae/ config.json");
ABSL_FLAG(std::string, like, LONGSANA_SOURCE_DIR "/tests/testdata/tiny-longsana",
          "model folder whose tokenizer/, scheduler/ and model_index.json are copied");
ABSL_FLAG(uint64_t, seed, 0, "random seed");

namespace {

namespace fs = std::filesystem;
using longsana::engine::ParamSpec;
using longsana::engine::ParamSpecs;

enum class Init { kFanIn, kOnes, kZeros };

// A tensor of `shape` as `init` says.
at::Tensor Initial(Init init, const std::vector<int64_t>& shape) {
  switch (init) {
    case Init::kOnes:
      return at::ones(shape);
    case Init::kZeros:
      return at::zeros(shape);
    case Init::kFanIn:
      break;
  }
  double fan_in = 1;  // every dimension but the first; a vector's own length
  for (size_t i = shape.size() > 1 ? 1 : 0; i < shape.size(); ++i) {
    fan_in *= static_cast<double>(shape[i]);
  }
  return at::rand(shape).mul_(2.0).sub_(1.0).mul_(1.0 / std::sqrt(fan_in));
}

bool IsNorm(const std::string& name) {
  return name.find("norm") != std::string::npos && !name.ends_with(".bias");
}
Init DitInit(const std::string& name) {
  if (IsNorm(name)) return Init::kOnes;
  return name.ends_with("scale_shift_table") ? Init::kZeros : Init::kFanIn;
}
Init GemmaInit(const std::string& name) { return IsNorm(name) ? Init::kZeros : Init::kFanIn; }
Init VaeInit(const std::string& name) {
  return name.ends_with(".gamma") ? Init::kOnes : Init::kFanIn;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "longsana-random-model: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const fs::path out = absl::GetFlag(FLAGS_out);
  const fs::path configs = absl::GetFlag(FLAGS_configs);
  const fs::path like = absl::GetFlag(FLAGS_like);
  if (out.empty()) return Fail("--out is required");
  if (fs::exists(out)) return Fail(out.string() + " exists; give a new folder");
  auto dit = longsana::engine::DitConfig::FromFile(configs / "transformer/config.json");
  auto gemma = longsana::engine::Gemma2Config::FromFile(configs / "text_encoder/config.json");
  auto vae = longsana::engine::WanVaeConfig::FromFile(configs / "vae/config.json");
  for (const absl::Status& s : {dit.status(), gemma.status(), vae.status()}) {
    if (!s.ok()) return Fail(std::string(s.message()));
  }
  at::manual_seed(absl::GetFlag(FLAGS_seed));
  std::error_code ec;
  for (const char* component : {"transformer", "text_encoder", "vae"}) {
    fs::create_directories(out / component, ec);
    fs::copy_file(configs / component / "config.json", out / component / "config.json", ec);
    if (ec) return Fail(ec.message());
  }
  fs::copy(like / "tokenizer", out / "tokenizer", fs::copy_options::recursive, ec);
  if (!ec) fs::copy(like / "scheduler", out / "scheduler", fs::copy_options::recursive, ec);
  if (!ec) fs::copy_file(like / "model_index.json", out / "model_index.json", ec);
  if (ec) return Fail("copying from " + like.string() + ": " + ec.message());
  struct Part {
    const char* file;
    ParamSpecs specs;
    at::ScalarType dtype;
    Init (*init)(const std::string&);
  };
  const Part parts[] = {
      {"transformer/diffusion_pytorch_model.safetensors", longsana::engine::DitParamSpecs(*dit),
       at::kBFloat16, DitInit},
      {"text_encoder/model.safetensors", longsana::engine::Gemma2ParamSpecs(*gemma), at::kBFloat16,
       GemmaInit},
      {"vae/diffusion_pytorch_model.safetensors", longsana::engine::WanVaeDecoderParamSpecs(*vae),
       at::kFloat, VaeInit},
  };
  for (const Part& p : parts) {
    std::printf("writing %s (%lld parameters)\n", p.file,
                static_cast<long long>(longsana::engine::CountParams(p.specs)));
    std::fflush(stdout);
    std::vector<longsana::tools::SafetensorsEntry> entries;
    for (const ParamSpec& spec : p.specs) entries.push_back({spec.name, p.dtype, spec.shape});
    const absl::Status written =
        longsana::tools::WriteSafetensors((out / p.file).string(), std::move(entries),
                                          [&](const longsana::tools::SafetensorsEntry& e) {
                                            return Initial(p.init(e.name), e.shape);
                                          });
    if (!written.ok()) return Fail(std::string(written.message()));
  }
  std::printf("random model written to %s\n", out.c_str());
  return 0;
}
