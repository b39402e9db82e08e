# syntax=docker/dockerfile:1.7
#
# Every Runwarden binary from one build, one slim image per binary:
#
#   docker build --target auth    -t auth .      # distroless cc, non-root
#   docker build --target runs    -t runs .
#   docker build --target quotas  -t quotas .
#   docker build --target audit   -t audit .
#   docker build --target migrate -t migrate .   # the migrations, run as a Cloud Run job
#   docker build --target runner  -t runner .    # runner + demo-agent, with ffmpeg, non-root
#
# Layers: `chef` (toolchain + cargo-chef), `planner` (the dependency recipe from the
# manifests), `deps` (every dependency compiled from that recipe only: cached until a
# Cargo.toml or Cargo.lock changes), `builder` (the workspace's own code), then one runtime
# stage per binary. Cloud Build builds the targets one after another on one daemon, so
# `deps` and `builder` are built once per build and reused by every target.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG DISTROLESS=gcr.io/distroless/cc-debian12:nonroot
ARG RUNNER_BASE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS chef
WORKDIR /src
# rust-toolchain.toml pins the toolchain; cargo-chef is pinned here.
RUN cargo install cargo-chef --locked --version 0.1.78

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS deps
COPY --from=planner /src/recipe.json recipe.json
COPY rust-toolchain.toml rust-toolchain.toml
RUN cargo chef cook --release --locked --workspace --recipe-path recipe.json

FROM deps AS builder
COPY . .
# Symbols stripped in the images only (the workspace's release profile is left as it is).
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked \
      --bin auth --bin runs --bin quotas --bin audit --bin migrate \
      --bin runner --bin demo-agent \
 && mkdir -p /out \
 && cp target/release/auth target/release/runs target/release/quotas target/release/audit \
       target/release/migrate target/release/runner target/release/demo-agent /out/

# ---- functions: distroless (glibc, libgcc, CA certificates; no shell), user nonroot -------

FROM ${DISTROLESS} AS auth
COPY --from=builder /out/auth /usr/local/bin/auth
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/auth"]

FROM ${DISTROLESS} AS runs
COPY --from=builder /out/runs /usr/local/bin/runs
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/runs"]

FROM ${DISTROLESS} AS quotas
COPY --from=builder /out/quotas /usr/local/bin/quotas
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/quotas"]

FROM ${DISTROLESS} AS audit
COPY --from=builder /out/audit /usr/local/bin/audit
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/audit"]

FROM ${DISTROLESS} AS migrate
COPY --from=builder /out/migrate /usr/local/bin/migrate
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/migrate"]

# ---- the runner: its agents need ffmpeg, so Debian slim with ffmpeg, user runner (10001) ---

FROM ${RUNNER_BASE} AS runner
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates ffmpeg \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/runner --shell /usr/sbin/nologin runner
# demo-agent beside runner: the runner finds its default agent next to its own binary.
COPY --from=builder /out/runner /out/demo-agent /usr/local/bin/
USER 10001:10001
WORKDIR /home/runner
ENV TMPDIR=/tmp
ENTRYPOINT ["/usr/local/bin/runner"]
