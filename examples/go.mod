module github.com/keygate/keygate/examples

go 1.24

require github.com/keygate/keygate v0.0.0

replace github.com/keygate/keygate => ../
