module slipway.dev/slipctl

go 1.26.0

require slipway.dev/proto v0.0.0

replace slipway.dev/proto => ../proto
