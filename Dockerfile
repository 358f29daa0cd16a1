# breakroom: one binary, every lab. glibc and dynamically linked, so mirrord can
# attach to it with LD_PRELOAD (a static musl binary would not do).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The dependency layer: the workspace's manifests with an empty crate behind each,
# built once; it is reused until a manifest or Cargo.lock changes, so an edit to the
# sources recompiles breakroom's own crates only.
COPY Cargo.toml Cargo.lock ./
COPY crates/platform/Cargo.toml crates/platform/
COPY crates/driver/Cargo.toml crates/driver/
COPY crates/labs/vote/Cargo.toml crates/labs/vote/
COPY crates/labs/items/Cargo.toml crates/labs/items/
COPY crates/labs/datasets/Cargo.toml crates/labs/datasets/
COPY crates/labs/shop/Cargo.toml crates/labs/shop/
RUN for crate in crates/platform crates/driver crates/labs/vote crates/labs/items crates/labs/datasets crates/labs/shop; do \
      mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; \
    done \
 && mkdir -p src && touch src/lib.rs && echo 'fn main() {}' > src/main.rs \
 && cargo build --release --locked --bin breakroom \
 && rm -rf src crates
COPY src ./src
COPY crates ./crates
COPY migrations ./migrations
COPY web ./web
# The console evaluates the alert rules embedded at build time.
COPY deploy/prometheus/rules ./deploy/prometheus/rules
# Newer than the empty crates' build, so cargo rebuilds every crate of the workspace.
RUN find src crates -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin breakroom

FROM debian:bookworm-slim
# curl: seed 003's runbook drives the load generator with `kubectl exec … curl localhost:8010`,
# and compose's healthchecks ask each lab's /health with it.
# DL3008 (pin apt versions): bookworm's archive keeps only the current version of a package,
# so a pinned ca-certificates or curl breaks the build at their next security update; the
# base image's tag is what pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin breakroom
COPY --from=build /src/target/release/breakroom /usr/local/bin/breakroom
# Works with a read-only root filesystem: the embedded SQLite database and a generated
# admin token go to /tmp (mount an emptyDir or tmpfs there).
ENV BREAKROOM_DATA_DIR=/tmp/breakroom
USER 1000:1000
EXPOSE 8000
ENTRYPOINT ["breakroom"]
CMD ["serve", "vote"]
