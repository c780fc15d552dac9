// device_ops: every host<->device transfer and every wait the engine asks for, in one place.
//
// On a GPU the step loop (DiT forward + sampler update) must never make the host wait for the
// device, or the runner could not queue forward N+1 while forward N runs. So the engine routes
// its uploads, downloads, scalar reads and cross-stream hand-overs through these functions,
// and each one counts, per thread, what it was asked to do. The counting is the same on every
// device: the CPU build runs the very calls the CUDA build runs, so a CPU test proves that
// the loop asks for no wait (tests/sampler/step_transfers_test.cc). The counts cannot see a
// synchronising call that bypasses this module (a stray `.item()`): on CUDA, LibTorch's own
// sync detector (c10::cuda::warning_state) is the check for that.
//
//   Upload       host -> device, no host wait (pinned staging, queued on the current stream)
//   ToHost       device -> host: a host wait (counted)
//   Fence        a point in the current stream's queue: another stream waits on it on the
//                device (no host wait), or the host waits on it (counted)
#pragma once

#include <ATen/ATen.h>
#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>

namespace longsana::engine::device {

// What this thread has asked for since it started (monotonic; subtract two readings).
struct TransferCounts {
  int64_t host_waits = 0;  // ToHost and Fence::HostWait: the host waited for the device
  int64_t uploads = 0;     // Upload calls (asynchronous on CUDA)
  int64_t fences = 0;      // Fence::Record on a device with streams

  TransferCounts operator-(const TransferCounts& earlier) const {
    return {host_waits - earlier.host_waits, uploads - earlier.uploads, fences - earlier.fences};
  }
};
TransferCounts ThreadCounts();

// `host` (a CPU tensor) on `device` as `dtype`. On CUDA the values are staged in pinned
// memory and the copy is queued on the current stream without a host wait (PyTorch's caching
// host allocator keeps the staging buffer until the copy has run). On the CPU, a copy. The
// result never shares memory with `host` (which may borrow a buffer, as from_blob does).
at::Tensor Upload(const at::Tensor& host, const at::Device& device, at::ScalarType dtype);

// `t` on `device` as `dtype`: a conversion where it already is there, an Upload from the
// CPU, a ToHost to the CPU. The inputs of a forward go through this, so an input left on the
// host shows in the counts instead of hiding a synchronous copy.
at::Tensor ToDevice(const at::Tensor& t, const at::Device& device, at::ScalarType dtype);

// A contiguous CPU tensor with the values of `t`. On CUDA the host waits for the work that
// produces `t` (counted as a host wait on every device).
at::Tensor ToHost(const at::Tensor& t);

// Tells the caching allocator that `tensors` are used by the current stream, so their memory
// is not handed to the stream that allocated them before this stream's queued work has read
// it. No-op off CUDA, or when the current stream is the allocating one.
void UseOnCurrentStream(std::initializer_list<at::Tensor> tensors);

// A point in the current stream's queue on one device. Default-constructed or recorded off
// CUDA, it is already reached (CPU work is done when the call returns). Copyable: copies
// share the event.
class Fence {
 public:
  Fence() = default;
  // The work queued so far on the current stream of `device`.
  static Fence Record(const at::Device& device);

  // Makes the current stream wait for the fence, on the device (no host wait), and marks
  // `tensors` as used by the current stream (UseOnCurrentStream).
  void WaitOnCurrentStream(std::initializer_list<at::Tensor> tensors = {}) const;
  // The host waits until the device has reached the fence (counted).
  void HostWait() const;
  // Whether the device has reached the fence (never waits).
  bool Reached() const;

 private:
  std::shared_ptr<c10::Event> event_;
};

// For its lifetime, the calling thread queues its work for `device` on a stream of its own
// from the pool (CUDA), so the runner, the media workers and the text worker overlap on the
// device; hand-overs between them go through Fence. Nothing off CUDA.
class OwnStream {
 public:
  explicit OwnStream(const at::Device& device);

 private:
  std::optional<c10::StreamGuard> guard_;
};

}  // namespace longsana::engine::device
