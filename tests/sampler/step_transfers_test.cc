// What the step loop asks of the host: device_ops' counting, and a whole session's steps
// (denoise, cache pass, recache; alone and batched) asking for no host wait at all. The same
// calls run on CUDA, where tests/gpu adds CUDA's own sync detector around the same loop.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "engine/common/device_ops.h"
#include "engine/sampler/longlive_sampler.h"
#include "tests/sampler/sampler_fixture.h"

namespace longsana::engine {
namespace {

TEST(DeviceOps, CountsWhatIsAskedPerThread) {
  const device::TransferCounts before = device::ThreadCounts();
  std::vector<int64_t> values = {3, 1, 2};
  at::Tensor up =
      device::Upload(at::from_blob(values.data(), {3}, at::kLong), at::kCPU, at::kFloat);
  values = {0, 0, 0};  // the upload owns its values
  EXPECT_TRUE(at::equal(up, at::tensor({3.0f, 1.0f, 2.0f})));
  at::Tensor host = device::ToHost(up);
  EXPECT_TRUE(at::equal(host, up));
  device::Fence fence = device::Fence::Record(at::kCPU);
  EXPECT_TRUE(fence.Reached());
  fence.WaitOnCurrentStream({up});
  fence.HostWait();
  const device::TransferCounts d = device::ThreadCounts() - before;
  EXPECT_EQ(d.uploads, 1);
  EXPECT_EQ(d.host_waits, 2);  // ToHost and HostWait
  EXPECT_EQ(d.fences, 0);      // the CPU has no streams to fence

  device::TransferCounts other;
  std::thread([&] {
    (void)device::ToHost(up);
    other = device::ThreadCounts();
  }).join();
  EXPECT_EQ(other.host_waits, 1);  // that thread's own count
  EXPECT_EQ((device::ThreadCounts() - before).host_waits, 2);
}

TEST(DeviceOps, ToDeviceConvertsInPlaceAndUploadsFromTheHost) {
  const device::TransferCounts before = device::ThreadCounts();
  at::Tensor t = at::ones({2});
  EXPECT_EQ(device::ToDevice(t, at::kCPU, at::kDouble).scalar_type(), at::kDouble);
  EXPECT_EQ((device::ThreadCounts() - before).uploads, 0);  // already there: a conversion
  EXPECT_THROW(device::Upload(t.to(at::kMeta), at::kCPU, at::kFloat), c10::Error);
}

// Interactive sessions of 8 latent frames: blocks [0, 5) and [5, 8).
class StepTransfersTest : public SamplerTest {
 protected:
  std::unique_ptr<SamplerSession> Live(uint64_t seed) { return Session(seed, 8, {}, true); }
};

TEST_F(StepTransfersTest, EveryStepOfABatchedSessionAsksForNoHostWait) {
  auto a = Live(1);
  auto b = Live(2);
  SamplerSession* both[] = {a.get(), b.get()};
  int steps = 0;
  int64_t uploads = 0;
  bool recached = false;
  while (!a->done()) {
    // Exercise the recache phase too: at block 1's first step, both re-encode block 0.
    if (!recached && a->block() == 1 && a->phase() == SamplerSession::Phase::kDenoise &&
        a->step() == 0) {
      ASSERT_TRUE(a->RequestRecache());
      ASSERT_TRUE(b->RequestRecache());
      recached = true;
    }
    const device::TransferCounts before = device::ThreadCounts();
    RunSamplerStep(*model_, both);
    const device::TransferCounts d = device::ThreadCounts() - before;
    EXPECT_EQ(d.host_waits, 0) << "step " << steps;
    uploads += d.uploads;
    ++steps;
    (void)a->TakeFinishedBlock();
    (void)b->TakeFinishedBlock();
  }
  EXPECT_TRUE(recached);
  EXPECT_EQ(steps, 2 * (4 + 1) + 1);  // 2 blocks of 4 denoise steps and a cache pass; 1 recache
  // Per session: 3 re-noisings per block and block 1's starting noise, each an Upload.
  EXPECT_EQ(uploads, 2 * (2 * 3 + 1));
}

TEST_F(StepTransfersTest, ANewSessionUploadsItsNoiseWithoutAWait) {
  const device::TransferCounts before = device::ThreadCounts();
  auto s = Session(3, 8);
  const device::TransferCounts d = device::ThreadCounts() - before;
  EXPECT_EQ(d.host_waits, 0);
  EXPECT_EQ(d.uploads, 1);  // block 0's starting noise
}

}  // namespace
}  // namespace longsana::engine
