module github.com/keygate/keygate

go 1.24

require (
	github.com/golang-jwt/jwt/v5 v5.3.1
	golang.org/x/crypto v0.41.0
)

require golang.org/x/sys v0.35.0 // indirect
