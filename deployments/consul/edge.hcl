# Consul ACL policy of slipway-edge, the least it needs. Every rule names the
# calls of services/edge/consul that use it.
#
#   consul acl policy create -name slipway-edge -rules @edge.hcl
#   consul acl token create -description "slipway-edge <id>" -policy-name slipway-edge

# Routes come from the passing instances of the Slipway-managed services:
# Catalog().Services (to find the services tagged "slipway") and
# Health().Service per service, both blocking queries. Read only.
service_prefix "" {
  policy = "read"
}

# Health and catalog answers leave out entries whose Consul node the token
# cannot read.
node_prefix "" {
  policy = "read"
}

# The coordinator's traffic intents: KV List (blocking query). Read only.
key_prefix "slipway/routes/" {
  policy = "read"
}

# The edge's acknowledgement, KV Acquire of slipway/edges/<edge id> under its
# session. With several edges, give each its own policy naming its key,
#   key "slipway/edges/<edge id>" { policy = "write" }
# instead of this prefix, so that no edge can withdraw another's ack.
key_prefix "slipway/edges/" {
  policy = "write"
}

# Session().Create, Renew and Destroy of the session the ack is bound to
# (behavior delete, TTL -session-ttl). A session belongs to the Consul node of
# the agent the edge talks to; name that node instead of the prefix when it
# is known, session "<consul node>" { policy = "write" }.
session_prefix "" {
  policy = "write"
}

# The coordinator's node fences: KV List (blocking query). Read only. The
# edge routes no instance of a fenced node.
key_prefix "slipway/fences/" {
  policy = "read"
}
