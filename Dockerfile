# Multi-stage build: compile in the Rust image, run in a slim Debian.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin switchboard

FROM debian:bookworm-slim
# curl serves the health check; ca-certificates the HTTPS webhooks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data switchboard \
 && mkdir /data && chown switchboard /data
COPY --from=build /src/target/release/switchboard /usr/local/bin/switchboard
USER switchboard
ENV SWITCHBOARD_DATA_DIR=/data \
    SWITCHBOARD_HTTP_ADDR=0.0.0.0:8080 \
    SWITCHBOARD_MQTT_ADDR=0.0.0.0:1883 \
    SWITCHBOARD_MQTT_WS_ADDR=0.0.0.0:8083 \
    SWITCHBOARD_HTTPS_ADDR=0.0.0.0:8443 \
    SWITCHBOARD_MQTTS_ADDR=0.0.0.0:8883 \
    SWITCHBOARD_MQTT_WSS_ADDR=0.0.0.0:8084
VOLUME /data
EXPOSE 1883 8083 8080 8443 8883 8084
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["switchboard"]
CMD ["serve"]
