# slipway-coordinator FROM scratch: one static binary (CGO_ENABLED=0), no
# shell, no libc. Build context: a directory holding slipway-coordinator and
# an empty data/ (scripts/compose.sh prepares it). Raft state lives in the
# /data volume, owned by the unprivileged user the process runs as.
FROM scratch
COPY slipway-coordinator /slipway-coordinator
COPY --chown=65534:65534 data /data
USER 65534:65534
ENV SLIPWAY_DATA_DIR=/data SLIPWAY_LOG_FORMAT=json
EXPOSE 7400 7401
VOLUME /data
ENTRYPOINT ["/slipway-coordinator"]
