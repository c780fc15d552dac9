#include "engine/common/device_ops.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <chrono>
#include <thread>

namespace longsana::engine::device {
namespace {

thread_local TransferCounts counts;

// Devices whose work is queued on streams (the host does not wait for it by default).
bool Asynchronous(const at::Device& device) { return device.is_cuda(); }

c10::Stream CurrentStream(const at::Device& device) {
  return c10::impl::getDeviceGuardImpl(device.type())->getStream(device);
}

}  // namespace

TransferCounts ThreadCounts() { return counts; }

at::Tensor Upload(const at::Tensor& host, const at::Device& device, at::ScalarType dtype) {
  TORCH_CHECK(host.device().is_cpu(), "device::Upload: the source must be a CPU tensor, got ",
              host.device());
  ++counts.uploads;
  if (!Asynchronous(device)) return host.to(device, dtype, /*non_blocking=*/false, /*copy=*/true);
  // Pageable memory would make the copy synchronous: stage in pinned memory first.
  at::Tensor staged = at::empty(host.sizes(), host.options().dtype(dtype).pinned_memory(true));
  staged.copy_(host);
  return staged.to(device, dtype, /*non_blocking=*/true, /*copy=*/false);
}

at::Tensor ToDevice(const at::Tensor& t, const at::Device& device, at::ScalarType dtype) {
  if (t.device() == device) return t.to(dtype);
  if (t.device().is_cpu()) return Upload(t, device, dtype);
  if (device.is_cpu()) return ToHost(t).to(dtype);
  return t.to(device, dtype);  // device to device: queued, no host wait
}

at::Tensor ToHost(const at::Tensor& t) {
  ++counts.host_waits;
  return t.to(at::kCPU).contiguous();
}

void UseOnCurrentStream(std::initializer_list<at::Tensor> tensors) {
  for (const at::Tensor& t : tensors) {
    if (t.defined() && Asynchronous(t.device())) t.record_stream(CurrentStream(t.device()));
  }
}

Fence Fence::Record(const at::Device& device) {
  Fence fence;
  if (!Asynchronous(device)) return fence;
  ++counts.fences;
  fence.event_ = std::make_shared<c10::Event>(device.type());
  fence.event_->record(CurrentStream(device));
  return fence;
}

void Fence::WaitOnCurrentStream(std::initializer_list<at::Tensor> tensors) const {
  if (event_) event_->block(CurrentStream(event_->device()));
  UseOnCurrentStream(tensors);
}

void Fence::HostWait() const {
  ++counts.host_waits;
  if (!event_) return;
  // c10::Event has no host-side synchronize before LibTorch 2.4: poll (the waits this serves
  // last a forward, so 50 us of latency is noise).
  while (!event_->query()) std::this_thread::sleep_for(std::chrono::microseconds(50));
}

bool Fence::Reached() const { return !event_ || event_->query(); }

OwnStream::OwnStream(const at::Device& device) {
  if (!Asynchronous(device)) return;
  guard_.emplace(c10::impl::getDeviceGuardImpl(device.type())->getStreamFromGlobalPool(device));
}

}  // namespace longsana::engine::device
