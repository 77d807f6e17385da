//go:build tools

// Package consul pins the Consul agent that tests and the demo run.
package consul

import _ "github.com/hashicorp/consul"
