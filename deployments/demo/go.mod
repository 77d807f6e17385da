module slipway.dev/demo

go 1.26.0
