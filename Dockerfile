# syntax=docker/dockerfile:1
# The switchyard image: one binary, every subcommand (`api`, `worker --role …`,
# `migrate`, `config check`, …) chosen by the container's command. compose/compose.yaml
# builds it; `docker build -t switchyard .` does too.
#
# Stages: `chef` has the toolchain and cargo-chef; `planner` reduces the workspace to
# a recipe of its dependencies; `builder` compiles the dependencies from the recipe
# alone (a layer kept until a Cargo.toml or Cargo.lock changes), then the workspace; the
# runtime image holds the binary, CA certificates and curl (for an API health check).

# The toolchain the project builds with (rustc 1.95); bookworm, like the runtime
# image, so the binary links against the glibc it runs on.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked -p switchyard --recipe-path recipe.json
COPY . .
# Also set in .cargo/config.toml: SQL is checked against the committed .sqlx/ data,
# so no database is needed to build.
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked -p switchyard \
    && install -D -m 0755 target/release/switchyard /out/switchyard

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# Debian's security updates come under the same names, and an exact version pin
# breaks the build once the archive drops that version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
# A user of its own, without a login: its home is the working directory, where
# `switchyard up` would keep its quick-start secret and a switchyard.toml is read.
RUN groupadd --system --gid 10001 switchyard \
    && useradd --system --uid 10001 --gid switchyard --create-home \
    --home-dir /var/lib/switchyard --shell /usr/sbin/nologin switchyard
COPY --from=builder /out/switchyard /usr/local/bin/switchyard
USER 10001:10001
WORKDIR /var/lib/switchyard
# In a container the API must listen beyond loopback; compose sets it too.
ENV SWITCHYARD_HTTP__LISTEN=0.0.0.0:8080
EXPOSE 8080
# No HEALTHCHECK here: the same image runs workers and the one-shot migrate, which do
# not listen. An API container's check is `curl -fsS http://127.0.0.1:8080/readyz`
# (compose/compose.yaml has it).
ENTRYPOINT ["switchyard"]
CMD ["--help"]
