// Stand-in for the header a CUDA build of PyTorch generates at build time and Debian's
// CPU-only LibTorch does not ship. Used only by the compile-only check of the engine's CUDA
// branches (engine/runner/CMakeLists.txt, longsana_engine_cuda_check); never by a real build.
#pragma once
#define C10_CUDA_BUILD_SHARED_LIBS
