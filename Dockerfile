# The gateway image: `hydrenv run` as the entrypoint, the proxy next to it, the templates, and
# nothing else (no shell, no package manager). docs/deployment.md says how it is built and run.
#
#   docker build -t genai-gateway .                      profile-guided proxy, as scripts/build-release.sh
#   docker build --build-arg PGO=0 -t genai-gateway .    plain release proxy (no training run, quicker)
#   az acr build --registry <acr> --image genai-gateway:<tag> .    what scripts/deploy.sh runs
#
# Stages: chef (toolchain + cargo-chef) -> planner (the dependency recipe) -> build (dependencies
# compiled in their own cached layers, then the sources) -> runtime (distroless, non-root).
#
# Why cargo-chef for the dependency layer: the workspace has four crates with explicit bin and
# test targets; a hand-made "dummy sources" step has to recreate every target path and breaks
# when one is added, cargo-chef derives the skeleton from the manifests themselves. The recipe
# only changes when a Cargo.toml or Cargo.lock does, so a source change rebuilds from the
# `COPY . .` of the build stage on. Only classic-builder features are used (no BuildKit cache
# mounts), so the same file builds with `docker build` and on ACR Tasks.
#
# The runtime stage's layout (COPY destinations, USER, ENV, EXPOSE, ENTRYPOINT) is what
# hydrenv/tests/it/image.rs reads to lay out the image's filesystem and run the entrypoint as
# PID 1 without a container engine; change them together.

# checkov:skip=CKV_DOCKER_2:Container Apps probes /healthz and /readyz on the admin port; no shell or curl in distroless for a HEALTHCHECK, and Container Apps ignores it
# checkov:skip=CKV_DOCKER_7:FROM uses ARGs (RUST_IMAGE, RUNTIME_IMAGE) pinned to versions; checkov does not resolve ARGs
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS chef
ARG CARGO_CHEF_VERSION=0.1.77
# python3 runs the PGO training (bench/pgo_train.py, standard library only); llvm-tools brings
# llvm-profdata, which merges its profile. Debian packages are not pinned to exact versions: the
# base image pins the release, and an exact pin breaks with every point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup component add llvm-tools \
    && cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
# 1: profile-guided proxy (what ships, ~7.5 min from clean on 2 cores); 0: plain release proxy.
ARG PGO=1
COPY --from=planner /src/recipe.json recipe.json
# The dependencies of scripts/build-release.sh's first build (the same packages, so the same
# features), then those of its instrumented build (same RUSTFLAGS and target directory as the
# script uses, or cargo would compile them again). The last, profile-using build cannot be
# cached: its flags name the profile, which is new each time.
RUN cargo chef cook --release --locked --recipe-path recipe.json \
        -p proxy -p mock -p hydrenv -p bench \
    && if [ "${PGO}" != 0 ]; then \
        RUSTFLAGS="-Cprofile-generate=/src/target/pgo/raw" cargo chef cook --release --locked \
            --recipe-path recipe.json -p proxy --target-dir target/pgo/gen; \
    fi
COPY . .
RUN PGO="${PGO}" scripts/build-release.sh \
    && mkdir -p /out/shared-configs \
    && cp target/dist/hydrenv target/dist/proxy /out/

FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.title="genai-gateway" \
      org.opencontainers.image.description="Azure OpenAI gateway: hydrenv renders the config from the environment, then execs the proxy"
# hydrenv execs the `proxy` installed next to it (docs/hydrenv.md).
COPY --from=build /out/hydrenv /out/proxy /usr/local/bin/
# The templates hydrenv renders; the entrypoint reads them from here, so a volume mounted over
# this directory overrides them without a rebuild.
COPY templates/ /etc/hydrenv/templates/
# Where releases are written: Container Apps mounts an EmptyDir volume here, shared with the
# OpenTelemetry Collector sidecar. Owned by the runtime user so the image also runs without it.
COPY --from=build --chown=65532:65532 /out/shared-configs /shared-configs
ENV SHARED_ROOT=/shared-configs
# distroless "nonroot"
USER 65532:65532
# API (GATEWAY_LISTEN) and admin (GATEWAY_ADMIN_LISTEN: /healthz, /readyz, /metrics).
EXPOSE 8080 9091
ENTRYPOINT ["/usr/local/bin/hydrenv", "run", "--templates", "/etc/hydrenv/templates"]
