# syntax=docker/dockerfile:1
#
# One image for every hosted-learners binary: intake, entitlement, cards,
# directory (the four gRPC services) and hlctl (the operator's command line).
#
# Which binary runs: the image's CMD starts `intake`; docker-compose.yml (and
# later the Kubernetes manifests) override the command per service, e.g.
#     command: ["directory"]
#     docker run --rm IMAGE hlctl --help
# All configuration comes from the environment (<NAME>__<SECTION>__<FIELD>),
# nothing is baked into the image.
#
# Needs BuildKit (the RUN --mount cache mounts below): the default of Docker
# 23 and later with the buildx plugin and of `docker compose` v2; with an older
# engine or Debian 12's docker.io, export DOCKER_BUILDKIT=1 before
# `docker build` / `docker-compose build`.

###########################################################################
# Build
###########################################################################
FROM rust:1-bookworm AS builder

# No protoc: crates/contracts compiles proto/ with a pure-Rust compiler.
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# Only what the workspace needs, manifests first: a change to a README, the
# deployment files or the tests does not invalidate the build. A workspace
# member in another top-level folder must be added here.
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY crates ./crates
COPY services ./services
COPY tools ./tools
# A workspace member (end-to-end tests): cargo needs its manifest to load the workspace.
COPY tests ./tests

# The cargo registry and the target directory are BuildKit cache mounts: a
# rebuild after a source change only recompiles the workspace's own crates.
# Cache mounts are not part of the image, so the binaries are copied out of
# target/ in the same step.
RUN --mount=type=cache,id=hosted-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=hosted-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=hosted-target,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p hosted-intake -p hosted-entitlement -p hosted-cards \
        -p hosted-directory -p hosted-hlctl \
    && mkdir -p /out \
    && cp target/release/intake target/release/entitlement target/release/cards \
          target/release/directory target/release/hlctl /out/

###########################################################################
# Run
###########################################################################
FROM debian:bookworm-slim AS runtime

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed, unprivileged uid/gid (Kubernetes' runAsNonRoot can check it).
RUN groupadd --system --gid 10001 hosted \
    && useradd --system --uid 10001 --gid hosted --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin hosted

COPY --from=builder /out/ /usr/local/bin/
# The entitlement policy the image starts with (ENTITLEMENT__POLICY__FILE).
COPY policy /etc/hosted-learners/policy

USER 10001:10001

# gRPC (and grpc.health.v1 on the same port): intake 50051, entitlement 50052,
# cards 50053, directory 50054.
EXPOSE 50051 50052 50053 50054

# Overridden per service (see the top of this file).
CMD ["intake"]
