module github.com/keygate/keygate/auth/redislimit

go 1.24.0

require (
	github.com/alicebob/miniredis/v2 v2.40.0
	github.com/keygate/keygate v0.0.0
	github.com/redis/go-redis/v9 v9.22.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/stretchr/testify v1.11.1 // indirect
	github.com/yuin/gopher-lua v1.1.1 // indirect
	go.uber.org/atomic v1.11.0 // indirect
	golang.org/x/sys v0.41.0 // indirect
)

replace github.com/keygate/keygate => ../..
