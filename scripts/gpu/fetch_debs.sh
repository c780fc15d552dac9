#!/usr/bin/env bash
# Run HERE (Debian 12 with network): downloads the .deb files the engine-only build needs
# into .gpu-debs/ (git-ignored) so they can travel to the GPU machine, which has CUDA,
# CMake, ninja and PyTorch (LibTorch 2.x) but none of our Debian -dev packages and no network.
set -euo pipefail
cd "$(dirname "$0")/../.."

pkgs=(
  nlohmann-json3-dev
  libabsl-dev libabsl20220623
  libfmt-dev libfmt9
  libspdlog-dev libspdlog1.10
  libsentencepiece-dev libsentencepiece0
  libgtest-dev libgmock-dev
  libbenchmark-dev libbenchmark1debian
)
mkdir -p .gpu-debs
cd .gpu-debs
apt-get download "${pkgs[@]}"
du -sh .
