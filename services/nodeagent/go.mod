module slipway.dev/nodeagent

go 1.26.0

require (
	slipway.dev/platform v0.0.0
	slipway.dev/proto v0.0.0
)

replace (
	slipway.dev/platform => ../../platform
	slipway.dev/proto => ../../proto
)
