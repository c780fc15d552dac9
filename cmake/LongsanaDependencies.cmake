# Finds the third-party dependencies. Every find is guarded by the option that needs it so
# the engine-only build (LONGSANA_BUILD_SERVER=OFF) works with just LibTorch + a few headers.

find_package(Threads REQUIRED)
find_package(PkgConfig)  # optional: the GPU machine may lack pkg-config

# LibTorch: Debian's libtorch-dev 1.13 (CPU) here; the LibTorch 2.x inside PyTorch on the GPU
# machine (pass -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')).
find_package(Torch REQUIRED)
# TorchConfig's imported target carries its compile flags (e.g. the C++11 ABI define); the
# precompiled header and every torch translation unit must see identical flags.
message(STATUS "LibTorch ${Torch_VERSION} from ${TORCH_INSTALL_PREFIX}")

find_package(nlohmann_json 3.10 REQUIRED)
find_package(absl REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
# SentencePiece: its header and the path of its shared library. engine/text loads the
# library with dlopen instead of linking it (see engine/text/CMakeLists.txt).
find_path(SENTENCEPIECE_INCLUDE_DIR sentencepiece_processor.h REQUIRED)
find_library(SENTENCEPIECE_LIBRARY sentencepiece REQUIRED)

if(LONGSANA_BUILD_SERVER)
  find_package(Protobuf REQUIRED)
  find_package(gRPC CONFIG REQUIRED)
  find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(FFMPEG REQUIRED IMPORTED_TARGET libavcodec libavformat libavutil libswscale)
  # Boost.Beast (header-only) for the HTTP port, yaml-cpp for --config, OpenSSL's libcrypto
  # for token digests.
  find_package(Boost 1.74 REQUIRED)
  find_package(yaml-cpp REQUIRED)
  find_package(OpenSSL REQUIRED)
endif()

if(LONGSANA_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(LONGSANA_BUILD_BENCHMARKS)
  find_package(benchmark QUIET)
endif()

# CUDA kernels: compiled whenever nvcc exists (CI compiles them even without a GPU).
set(LONGSANA_HAVE_CUDA OFF)
if(NOT LONGSANA_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    set(LONGSANA_HAVE_CUDA ON)
  elseif(LONGSANA_CUDA STREQUAL "ON")
    message(FATAL_ERROR "LONGSANA_CUDA=ON but no CUDA compiler was found")
  endif()
endif()
message(STATUS "CUDA kernels: ${LONGSANA_HAVE_CUDA}")
