# syntax=docker/dockerfile:1.4
# longsana-serve container images (multi-stage). Targets:
#   cpu        Debian 12 with Debian's CPU LibTorch 1.13; serves the embedded tiny checkpoint
#              (/opt/longsana/model) by default: the demo, and `deploy/overlays/cpu-demo`.
#   cpu-build  the stage that compiles it (compilers, -dev packages, sources).
#   cuda       NVIDIA's CUDA + cuDNN runtime with an official LibTorch CUDA build; the same
#              server build (scripts/gpu/build_server.sh, Debian 12's libraries unpacked from
#              their .debs) for `deploy/overlays/gpu`.
#
#   buildah bud --format docker --layers --target cpu -t longsana-serve:cpu .
#   docker build --target cpu -t longsana-serve:cpu .           # the same with Docker
#
# Both runtime stages hold only runtime libraries (found from the binaries' own links), run as
# the unprivileged user 10001, expose gRPC 50051 and HTTP 8080, and check their health with
# `longsana health` (grpc-health-probe's exit codes). scripts/container.sh builds and runs the
# cpu image without a daemon or a registry (buildah, chroot isolation).

ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
ARG CUDA_DEVEL_IMAGE=docker.io/nvidia/cuda:12.6.3-cudnn-devel-ubuntu24.04
ARG CUDA_RUNTIME_IMAGE=docker.io/nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
ARG LIBTORCH_URL=https://download.pytorch.org/libtorch/cu126/libtorch-cxx11-abi-shared-with-deps-2.7.1%2Bcu126.zip
ARG CUDA_ARCHITECTURES=80;86;89;90
ARG JOBS=2

# ---- cpu ------------------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS cpu-build
ARG JOBS
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# The package layer first: it changes only with scripts/deps.sh.
COPY scripts/deps.sh scripts/deps.sh
RUN scripts/deps.sh build && apt-get install -y -qq --no-install-recommends ccache \
    && rm -rf /var/lib/apt/lists/*
COPY . .
# ccache in a build cache mount: a rebuild after a source change recompiles only what changed.
RUN --mount=type=cache,target=/root/.cache/ccache \
    cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DLONGSANA_BUILD_TESTS=OFF -DLONGSANA_BUILD_BENCHMARKS=OFF \
      -DLONGSANA_BUILD_SANITIZED=OFF -DLONGSANA_BUILD_TSAN=OFF -DLONGSANA_CUDA=OFF \
      -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache \
    && cmake --build /build -j "${JOBS}" --target longsana-server longsana \
    && install -D -m 0755 -s /build/bin/longsana-server /opt/longsana/bin/longsana-server \
    && install -D -m 0755 -s /build/bin/longsana /opt/longsana/bin/longsana \
    && mkdir -p /opt/longsana/model && cp -r tests/testdata/tiny-longsana/. /opt/longsana/model/ \
    && scripts/runtime_packages.sh /opt/longsana/bin/* \
         /usr/lib/x86_64-linux-gnu/libsentencepiece.so.0 > /opt/longsana/runtime-packages.txt

FROM ${DEBIAN_IMAGE} AS cpu
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=cpu-build /opt/longsana/runtime-packages.txt /opt/longsana/runtime-packages.txt
RUN apt-get update -qq \
    && xargs -a /opt/longsana/runtime-packages.txt apt-get install -y -qq --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 longsana \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
         --shell /usr/sbin/nologin longsana
COPY --from=cpu-build /opt/longsana /opt/longsana
ENV PATH=/opt/longsana/bin:$PATH
USER 10001:10001
EXPOSE 50051 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD ["longsana", "health", "--server=localhost:50051"]
ENTRYPOINT ["longsana-server"]
CMD ["--model_dir=/opt/longsana/model", "--device=cpu"]

# ---- cuda -----------------------------------------------------------------------------------
# Debian 12's libraries for the server (gRPC, protobuf, FFmpeg, ...), as .debs, for the
# package-free CUDA build (NVIDIA's images are Ubuntu's; their glibc is newer than Debian's).
FROM ${DEBIAN_IMAGE} AS debian-debs
WORKDIR /src
COPY scripts/gpu/fetch_debs.sh scripts/gpu/fetch_debs.sh
RUN apt-get update -qq && scripts/gpu/fetch_debs.sh server && rm -rf /var/lib/apt/lists/*

FROM ${CUDA_DEVEL_IMAGE} AS cuda-build
ARG LIBTORCH_URL
ARG CUDA_ARCHITECTURES
ARG JOBS
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      g++ cmake ninja-build curl unzip ca-certificates binutils \
    && rm -rf /var/lib/apt/lists/*
RUN curl -fsSL "${LIBTORCH_URL}" -o /tmp/libtorch.zip && unzip -q /tmp/libtorch.zip -d /opt \
    && rm /tmp/libtorch.zip
WORKDIR /src
COPY --from=debian-debs /src/.gpu-debs .gpu-debs
COPY . .
RUN LONGSANA_TORCH_PREFIX=/opt/libtorch LONGSANA_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
      LONGSANA_JOBS="${JOBS}" scripts/gpu/build_server.sh \
    && scripts/gpu/install_server.sh /opt/longsana /opt/libtorch \
    && mkdir -p /opt/longsana/model && cp -r tests/testdata/tiny-longsana/. /opt/longsana/model/

FROM ${CUDA_RUNTIME_IMAGE} AS cuda
COPY --from=cuda-build /opt/longsana /opt/longsana
RUN groupadd --gid 10001 longsana \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
         --shell /usr/sbin/nologin longsana
ENV PATH=/opt/longsana/bin:$PATH \
    LD_LIBRARY_PATH=/opt/longsana/lib
USER 10001:10001
EXPOSE 50051 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 \
  CMD ["longsana", "health", "--server=localhost:50051"]
ENTRYPOINT ["longsana-server"]
CMD ["--model_dir=/models/longsana", "--device=cuda"]
