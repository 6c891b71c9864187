# syntax=docker/dockerfile:1
#
# imb container image: one static binary on a distroless base, running as the
# unprivileged "nonroot" user (uid 65532). The same image runs the broker
# (imb serve, the default) and the development identity server (imb am).
#
#   docker build -t imb:local --build-arg VERSION=$(git describe --tags --always) .
#   docker run --rm -p 1883:1883 -v imb-data:/data imb:local serve \
#       --mqtt-addr 0.0.0.0:1883 --admin-addr 0.0.0.0:9100 --policy /etc/imb/topics.yaml \
#       --data /data --log-format json --issuer https://am.example.com/am/oauth2/realms/root/realms/iot
#
# docker-compose.yml runs it with amdev or against an existing AM; docs/configuration.md
# lists every setting.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first: this layer stays cached while only the sources change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# CGO off: a static binary that needs no libc in the runtime image. -buildvcs=false:
# .git is not part of the build context (.dockerignore); the version comes from VERSION.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
        -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/usr/local/bin/imb ./cmd/imb \
    && /out/usr/local/bin/imb version \
    && mkdir -p /out/state/data /out/etc/imb \
    && cp topics.yaml /out/etc/imb/topics.yaml

# distroless/static: CA certificates, tzdata, /etc/passwd with "nonroot"; no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/usr/local/bin/imb /usr/local/bin/imb
COPY --from=build /out/etc/imb/ /etc/imb/
# A named volume mounted on /data starts with this directory's owner: nonroot.
# /data is copied as an entry of /out/state/ so that --chown applies to the
# directory itself (COPY of a directory copies its contents, not the directory).
COPY --from=build --chown=65532:65532 /out/state/ /
USER 65532:65532
# Every connection holds two goroutines that rest on small stacks but grow during
# CONNECT; the runtime's adaptive first stack then hands every new goroutine the
# larger size. Off, an idle thing costs 3.1 KiB less (loadtest/RESULTS.md, memory).
ENV GODEBUG=adaptivestackstart=0
WORKDIR /data
VOLUME ["/data"]
# 1883 MQTT, 8883 MQTT over TLS, 9100 admin (/healthz, /readyz, /metrics).
# imb am, run from the same image, listens on 8080 (docker-compose.yml publishes it).
EXPOSE 1883 8883 9100
# No shell in the image: the binary probes its own admin endpoint. /readyz answers
# 200 once the listeners are bound and the identity provider's keys are usable.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/imb", "health", "--url", "http://127.0.0.1:9100/readyz"]
ENTRYPOINT ["/usr/local/bin/imb"]
# Listen on every interface of the container (imb's own defaults are loopback only).
# Token validation has no default: add --issuer and/or --introspect-url, or use
# --config /etc/imb/imb.yaml with a mounted file.
CMD ["serve", "--mqtt-addr", "0.0.0.0:1883", "--admin-addr", "0.0.0.0:9100", \
     "--policy", "/etc/imb/topics.yaml", "--data", "/data", "--log-format", "json"]
