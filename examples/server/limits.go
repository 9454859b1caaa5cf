package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/auth"
)

// The names of the server's rate limits, as the RateLimit-Policy and
// RateLimit response header fields show them.
const (
	limitAPIKey      = "api_key"
	limitAccessToken = "access_token"
	limitFailures    = "auth_failures"
	limitCredFails   = "credential_failures"
	limitExchange    = "token_exchange"
	limitRefresh     = "token_refresh"
)

// Default rate limits, a minute, of the -rate-limit-* flags.
const (
	defaultLimitAPIKey      = 600
	defaultLimitAccessToken = 1200
	defaultLimitFailures    = 20
	defaultLimitCredFails   = 10
	defaultLimitExchange    = 10
	defaultLimitRefresh     = 60
)

// rateLimits are the server's rate limits, each a number of requests a
// minute (in bursts of up to as many) where zero means no limit. The zero
// rateLimits limits nothing.
type rateLimits struct {
	// apiKey limits each API key's requests.
	apiKey int
	// accessToken limits the requests of each API key's access tokens,
	// together (and of each subject of an identity provider's tokens).
	accessToken int
	// failures limits the failed authentications of each client
	// address; once spent, the address is refused before its
	// credential is read.
	failures int
	// credentialFailures limits the failed authentications of each
	// credential, from any address; once spent, the credential is
	// refused before it is hashed or looked up.
	credentialFailures int
	// exchange limits each API key's POST /v1/auth/token, on top of
	// apiKey.
	exchange int
	// refresh limits each client address's POST /v1/auth/refresh.
	refresh int
	// failClosed answers 503 when the limiter fails, instead of letting
	// the request through.
	failClosed bool
}

// maxLimit bounds each limit: a million requests a minute is already
// "no limit" for this server.
const maxLimit = 1_000_000

// validate reports a limit out of range, naming its flag.
func (l rateLimits) validate() error {
	var errs []error
	for _, f := range []struct {
		flag string
		n    int
	}{
		{"-rate-limit-keys", l.apiKey},
		{"-rate-limit-tokens", l.accessToken},
		{"-rate-limit-failures", l.failures},
		{"-rate-limit-credential-failures", l.credentialFailures},
		{"-rate-limit-exchange", l.exchange},
		{"-rate-limit-refresh", l.refresh},
	} {
		if f.n < 0 || f.n > maxLimit {
			errs = append(errs, fmt.Errorf("%s must be a number of requests a minute from 0 (no limit) to %d, not %d", f.flag, maxLimit, f.n))
		}
	}
	return errors.Join(errs...)
}

// any reports whether any limit is set, so that a limiter is needed.
func (l rateLimits) any() bool {
	return l.apiKey > 0 || l.accessToken > 0 || l.failures > 0 || l.credentialFailures > 0 || l.exchange > 0 || l.refresh > 0
}

// perMinute returns the Limit of n requests a minute named name, or the
// zero Limit for n <= 0.
func perMinute(name string, n int) auth.Limit {
	if n <= 0 {
		return auth.Limit{}
	}
	return auth.PerMinute(name, n)
}

// guardLimits returns the Guard's limits, kept by limiter.
func (l rateLimits) guardLimits(limiter auth.Limiter) auth.RateLimits {
	return auth.RateLimits{
		Limiter:     limiter,
		APIKey:      perMinute(limitAPIKey, l.apiKey),
		AccessToken: perMinute(limitAccessToken, l.accessToken),
		Failures:    perMinute(limitFailures, l.failures),
		FailClosed:  l.failClosed,

		CredentialFailures: perMinute(limitCredFails, l.credentialFailures),
	}
}

// exchangeLimit is the limit of POST /v1/auth/token per API key.
func (l rateLimits) exchangeLimit() auth.Limit { return perMinute(limitExchange, l.exchange) }

// refreshLimit is the limit of POST /v1/auth/refresh per client address.
func (l rateLimits) refreshLimit() auth.Limit { return perMinute(limitRefresh, l.refresh) }

// Bounds of a key's own rate limit, the "rate_limit" of POST /v1/keys.
const (
	maxKeyLimitRequests = maxLimit
	maxKeyLimitPeriod   = 24 * time.Hour
)

// keyLimit is a key's own rate limit as the API shows it: requests per
// per_seconds seconds, in bursts of up to requests.
type keyLimit struct {
	Requests   int   `json:"requests"`
	PerSeconds int64 `json:"per_seconds"`
}

// toLimit returns k as an auth.Limit, under the name of the API keys'
// limit: the key's own limit replaces that one, and the response headers
// show it under the same name.
func (k keyLimit) toLimit() auth.Limit {
	return auth.Limit{Name: limitAPIKey, Requests: k.Requests, Period: time.Duration(k.PerSeconds) * time.Second}
}

// showLimit returns a record's own limit as the API shows it, or nil when
// the key has none. A period that is not whole seconds is rounded up.
func showLimit(l auth.Limit) *keyLimit {
	if l.IsZero() {
		return nil
	}
	return &keyLimit{Requests: l.Requests, PerSeconds: int64((l.Period + time.Second - 1) / time.Second)}
}

// widerThan reports whether k lets a key do more than the server's limit
// of n requests a minute (with bursts of n) would: more requests at once,
// or more over time. Zero n is no limit, which nothing is wider than.
func (k keyLimit) widerThan(n int) bool {
	if n <= 0 {
		return false
	}
	// k.Requests/k.PerSeconds > n/60, without division.
	return k.Requests > n || int64(k.Requests)*60 > int64(n)*k.PerSeconds
}
