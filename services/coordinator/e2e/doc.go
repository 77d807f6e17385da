// Package e2e holds the coordinator's end-to-end tests: a real Consul, a
// real single-node coordinator with its engine, a real node agent with the
// Docker driver and a real slipway-edge (built-in proxy or nginx), driven
// through DeployService under continuous load. It has no non-test code.
package e2e
