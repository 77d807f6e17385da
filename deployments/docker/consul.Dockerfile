# Consul FROM scratch for the compose cluster: the static build of the
# pinned tools/consul module (CGO_ENABLED=0 GOWORK=off go build). Consul
# writes its data under /consul/data (a dev agent keeps state in memory).
FROM scratch
COPY consul /bin/consul
COPY --chown=65534:65534 data /consul/data
USER 65534:65534
EXPOSE 8500 8300 8301 8302
ENTRYPOINT ["/bin/consul"]
