module github.com/keygate/keygate/keystore/redisfeed

go 1.24

require (
	github.com/keygate/keygate v0.0.0
	github.com/redis/go-redis/v9 v9.22.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.11.0 // indirect
	golang.org/x/sys v0.35.0 // indirect
)

replace github.com/keygate/keygate => ../..
