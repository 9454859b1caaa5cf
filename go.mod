module github.com/keygate/keygate

go 1.24

require golang.org/x/crypto v0.41.0

require golang.org/x/sys v0.35.0 // indirect
