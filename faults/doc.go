// Package faults is Slipway's fault suite: real coordinators, node agents,
// edges and Consul, each on its own test host (a network namespace with its
// own address on a bridge), under a workload of deploys, promotes, aborts
// and rollbacks and HTTP load through both edges, while a scenario injects
// a fault (a process killed, paused or restarted, a host partitioned, a
// disk full, a slow and lossy link). Invariant checkers (package check)
// turn what was recorded into violations.
//
// Profiles: FAULTS_PROFILE=short (the default, inside `make test`: each
// scenario once, fixed seed, short fault durations) or long (`make
// faults`: FAULTS_RUNS runs per scenario, random seed). FAULTS_SEED fixes
// the seed, FAULTS_SCENARIOS=a,b selects scenarios. The seed is printed
// for reproduction. Needs root (ip netns, iptables).
package faults
