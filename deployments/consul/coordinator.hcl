# Consul ACL policy of slipway-coordinator (its leader engine), the least it
# needs. Every rule names the calls of services/coordinator/consul that use it.
#
#   consul acl policy create -name slipway-coordinator -rules @coordinator.hcl
#   consul acl token create -description "slipway-coordinator" -policy-name slipway-coordinator

# Nodes: Health().Service("slipway-nodeagent", passing) discovers the node
# agents. A Slipway node is used only once its agent proves the node id with
# its nodeagent certificate when the leader dials it; a Consul entry alone
# never is enough.
service "slipway-nodeagent" {
  policy = "read"
}

# Health and catalog answers leave out entries whose Consul node the token
# cannot read.
node_prefix "" {
  policy = "read"
}

# Traffic intents, one key per service: KV Put (WriteIntent), Get
# (ReadIntent) and List (Intents, re-asserted from raft state).
key_prefix "slipway/routes/" {
  policy = "write"
}

# The route barrier: KV List of the edges' session-bound acknowledgements
# (WatchAcks, blocking queries). Read only: the edges write them.
key_prefix "slipway/edges/" {
  policy = "read"
}

# Node fences, one key per node (see catalog.FencesPrefix): KV List
# (Fenced), Put (Fence) and Delete (Unfence). The edges stop routing a
# fenced node's instances, so a node cut off from the coordinators alone
# does not serve beside its replacements.
key_prefix "slipway/fences/" {
  policy = "write"
}
