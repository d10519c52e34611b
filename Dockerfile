# syntax=docker/dockerfile:1.7
# The `commerce` binary: every service, one image (`serve --target <name>` picks).
#   docker build -t commerce .
# Dependencies are compiled in their own layer (cargo-chef), so a code change rebuilds
# only the workspace's crates.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.73
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# librdkafka is built from source (cmake) and includes curl's header.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=planner /src/recipe.json recipe.json
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo chef cook --release --locked --recipe-path recipe.json --package commerce
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked --package commerce --bin commerce
# Writable state directories, owned by the runtime user so volumes mounted there start
# out writable (the runtime image has no shell to make them).
RUN mkdir -p /state/keys /state/secrets /state/chat-attachments /state/search-index

# glibc, libgcc and CA certificates; no shell, no package manager; uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/commerce /usr/local/bin/commerce
COPY --from=builder --chown=65532:65532 /state /var/lib/commerce
USER 65532:65532
EXPOSE 8080-8089 9081-9089
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/commerce"]
CMD ["serve", "--target", "all"]
