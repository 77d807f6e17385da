# Consul ACL policy of slipway-nodeagent, the least it needs. Every rule names
# the calls of services/nodeagent/consul that use it. One token per node is
# better than one shared by all (revoke one host without touching the others);
# the policy can be the same.
#
#   consul acl policy create -name slipway-nodeagent -rules @nodeagent.hcl
#   consul acl token create -description "slipway-nodeagent <node>" -policy-name slipway-nodeagent

# Registrations in the local Consul agent: Agent().ServiceRegister of the
# agent itself (service "slipway-nodeagent") and of every instance it runs,
# under its service's name, which can be any name the coordinator deploys;
# ServiceDeregister; UpdateTTL of an instance's image HEALTHCHECK check;
# Agent().Services and Agent().Checks to reconcile what it owns (their
# answers leave out services the token cannot read). Narrow the prefix when
# every deployed service shares one, e.g. service_prefix "shop-" plus
# service "slipway-nodeagent".
service_prefix "" {
  policy = "write"
}

# The route barrier before an instance stops: KV List of the edges'
# acknowledgements (blocking query). Read only.
key_prefix "slipway/edges/" {
  policy = "read"
}
