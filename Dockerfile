# The icestream binary in a small image (docker-compose.yml builds it).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin icestream

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/icestream /usr/local/bin/icestream
ENTRYPOINT ["icestream"]
