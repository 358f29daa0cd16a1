# breakroom: one binary, every lab. glibc and dynamically linked, so mirrord can
# attach to it with LD_PRELOAD (a static musl binary would not do).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs askama.toml ./
COPY src ./src
COPY migrations ./migrations
COPY web ./web
RUN cargo build --release --locked --bin breakroom

FROM debian:bookworm-slim
# curl: seed 003's runbook drives the load generator with `kubectl exec … curl localhost:8010`.
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
