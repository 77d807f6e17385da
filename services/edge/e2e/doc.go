// Package e2e holds the edge's end-to-end tests: a real Consul agent, real
// demo backends, the slipway-edge binary in both modes and real nginx.
package e2e
