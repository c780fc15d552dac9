// What only a CUDA device can check, run by `ctest -L gpu` (scripts/gpu/check.sh). Every test
// skips without a device, and the suite compiles in CI against the CPU LibTorch.
//   - parity on CUDA for every component, fp32 (TF32 off) and bf16, with the tolerances of
//     engine/parity/tolerances.h;
//   - the sampler's step loop under CUDA's sync detector set to error (a hidden .item(), a
//     blocking copy or a synchronize anywhere in a step throws), and device_ops counting no
//     host wait;
//   - the engine end to end on the tiny model on CUDA: the dtypes it reports, and the same
//     bytes for a session alone or batched with others (the promise of batch invariance on
//     the same device, kept on CUDA by per-item kernels and deterministic cuDNN).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#if LONGSANA_TORCH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "engine/api/engine.h"
#include "engine/common/device_ops.h"
#include "engine/models/longsana_dit/dit_model.h"
#include "engine/models/model_directory.h"
#include "engine/parity/dit_parity.h"
#include "engine/parity/e2e_parity.h"
#include "engine/parity/text_parity.h"
#include "engine/parity/wan_vae_parity.h"
#include "engine/sampler/longlive_sampler.h"
#include "tests/common/testdata.h"
#include "tests/runner/batch_invariance.h"
#include "tests/runner/engine_test_util.h"

namespace longsana::engine {
namespace {

using ::longsana::testing::GoldenPath;
using ::longsana::testing::TinyModelDir;

#define LONGSANA_REQUIRE_CUDA() \
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device"

struct ParityCase {
  const char* golden;
  std::function<absl::StatusOr<ParityReport>(const ParityOptions&)> run;
  bool softcap = false;
  TimestepMode timesteps = TimestepMode::kBf16Rounded;
};

TEST(GpuParity, EveryComponentOnCudaInFp32AndBf16) {
  LONGSANA_REQUIRE_CUDA();
  // GOLDENS.md §5: TF32 alone breaks the fp32 tolerances.
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  const std::vector<ParityCase> cases = {
      {"dit_forward", RunDitForwardParity},
      {"dit_state", RunDitStateParity},
      {"sampler", RunSamplerParity, false, TimestepMode::kExact},
      {"sampler_bf16t", RunSamplerParity},
      {"gemma2", RunGemma2Parity},
      {"gemma2", RunGemma2Parity, true},
      {"vae_decode", RunVaeParity},
      {"e2e", RunE2eParity, true, TimestepMode::kExact},
  };
  for (ParityDtype dtype : {ParityDtype::kFloat32, ParityDtype::kBFloat16}) {
    for (const ParityCase& c : cases) {
      ParityOptions o;
      o.model_dir = TinyModelDir();
      o.golden_path = GoldenPath(c.golden);
      o.device = "cuda";
      o.dtype = dtype;
      o.softcap = c.softcap;
      o.timesteps = c.timesteps;
      o.verbose = true;
      auto report = c.run(o);
      ASSERT_TRUE(report.ok()) << c.golden << ": " << report.status();
      std::cout << FormatParityReport(*report);
      EXPECT_TRUE(report->ok()) << c.golden << " " << ParityDtypeName(dtype);
    }
  }
}

#if LONGSANA_TORCH_CUDA
// While alive, any synchronising CUDA call in this process throws (c10's sync debug mode).
class SyncsAreErrors {
 public:
  SyncsAreErrors() : before_(c10::cuda::warning_state().get_sync_debug_mode()) {
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
  }
  ~SyncsAreErrors() { c10::cuda::warning_state().set_sync_debug_mode(before_); }

 private:
  c10::cuda::SyncDebugMode before_;
};
#endif

TEST(GpuSteps, TheStepLoopNeverSynchronizesWithTheHost) {
  LONGSANA_REQUIRE_CUDA();
#if !LONGSANA_TORCH_CUDA
  GTEST_SKIP() << "built against a LibTorch without CUDA";
#else
  auto dir = ModelDirectory::Open(TinyModelDir());
  ASSERT_TRUE(dir.ok()) << dir.status();
  DitOptions options;
  options.device = at::Device(at::kCUDA);
  options.dtype = at::kBFloat16;
  auto model = DitModel::Load(*dir, options);
  ASSERT_TRUE(model.ok()) << model.status();
  at::Generator g = at::detail::createCPUGenerator(99);
  const at::Tensor caption = at::randn({24, 48}, g).to(at::kCUDA, at::kBFloat16);
  const at::Tensor mask = at::ones({24}, at::TensorOptions().dtype(at::kLong).device(at::kCUDA));
  SamplerOptions so;
  so.block_frames = 3;
  auto make = [&](uint64_t seed) {
    return std::make_unique<SamplerSession>(**model, so, 8, 8, 12, caption, mask,
                                            std::make_unique<SeededNoise>(seed),
                                            /*interactive=*/true);
  };
  // One session run outside the detector first: cuBLAS handles, kernels, the allocator.
  {
    auto warm = make(0);
    SamplerSession* one[] = {warm.get()};
    while (!warm->done()) {
      RunSamplerStep(**model, one);
      (void)warm->TakeFinishedBlock();
    }
  }
  auto a = make(1);
  auto b = make(2);
  SamplerSession* both[] = {a.get(), b.get()};
  int steps = 0;
  const device::TransferCounts before = device::ThreadCounts();
  {
    SyncsAreErrors guard;
    while (!a->done()) {
      EXPECT_NO_THROW(RunSamplerStep(**model, both)) << "step " << steps;
      (void)a->TakeFinishedBlock();
      (void)b->TakeFinishedBlock();
      ++steps;
    }
  }
  EXPECT_EQ((device::ThreadCounts() - before).host_waits, 0);
  EXPECT_EQ(steps, 2 * (4 + 1));
#endif
}

TEST(GpuEngine, TinyModelOnCudaReportsItsDtypesAndKeepsBatchInvariance) {
  LONGSANA_REQUIRE_CUDA();
  EngineConfig config = TinyConfig();
  config.device = DeviceKind::kCuda;
  auto engine = MakeEngine(config);
  ASSERT_TRUE(engine);
  const ModelInfo info = engine->Info();
  EXPECT_EQ(info.device, "cuda");
  EXPECT_EQ(info.transformer_dtype, "bfloat16");
  EXPECT_EQ(info.text_encoder_dtype, "bfloat16");
  EXPECT_EQ(info.vae_dtype, "float32");
  EXPECT_FALSE(info.tf32);
  EXPECT_EQ(info.warmup_width, 832);  // CUDA warms up at the default request size
  EXPECT_EQ(info.warmup_height, 480);

  ExpectSameBytesAloneAndBatched(*engine);
}

}  // namespace
}  // namespace longsana::engine
