# slipway-nodeagent FROM scratch: one static binary (CGO_ENABLED=0). With
# the docker driver it needs the host's Docker socket mounted at
# /var/run/docker.sock, hence root (or the socket's group, via `user:`);
# its state (fencing token, last desired set) lives in the /data volume.
FROM scratch
COPY slipway-nodeagent /slipway-nodeagent
COPY data /data
ENV SLIPWAY_DATA_DIR=/data SLIPWAY_LOG_FORMAT=json
EXPOSE 7410
VOLUME /data
ENTRYPOINT ["/slipway-nodeagent"]
