# slipway-edge FROM scratch in its built-in proxy mode (nginx mode needs
# nginx and is not in this image): one static binary (CGO_ENABLED=0), run
# as an unprivileged user.
FROM scratch
COPY slipway-edge /slipway-edge
USER 65534:65534
ENV SLIPWAY_MODE=proxy SLIPWAY_LOG_FORMAT=json
EXPOSE 8080 7420
ENTRYPOINT ["/slipway-edge"]
