# syntax=docker/dockerfile:1
# The imagetrust manager and CLI image:  make docker-build IMG=<registry>/imagetrust:<tag>
# Multi-arch:  docker buildx build --platform linux/amd64,linux/arm64 -t <image> --push .
# The build cross-compiles on the build machine's own platform, so no emulation is needed.

FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
# A static binary: no libc in the final image, and nothing of the builder leaks into it.
ENV CGO_ENABLED=0
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
# Only the packages the binary is built from (see .dockerignore).
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
COPY scanner/ scanner/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w" -o /out/imagetrust ./cmd/imagetrust
# The cache directory must exist and belong to the runtime user: a volume mounted there starts
# with this directory's ownership, and distroless has no shell to fix it later.
RUN mkdir -p /out/cache

# distroless/static: CA certificates, /etc/passwd with the nonroot user, tzdata; no shell, no
# package manager. The :nonroot tag runs as 65532:65532.
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="imagetrust" \
      org.opencontainers.image.description="Continuous container-image trust for Kubernetes: signatures, SBOMs and vulnerabilities, re-verified" \
      org.opencontainers.image.source="https://github.com/imagetrust/imagetrust" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/imagetrust /imagetrust
COPY --from=builder --chown=65532:65532 /out/cache /var/cache/imagetrust
# SBOM cache and Grype vulnerability DB (`imagetrust manager --cache-dir`). XDG_CACHE_HOME points
# the CLI's default cache (os.UserCacheDir) there too.
ENV XDG_CACHE_HOME=/var/cache/imagetrust
VOLUME /var/cache/imagetrust
USER 65532:65532
ENTRYPOINT ["/imagetrust"]
CMD ["manager"]
