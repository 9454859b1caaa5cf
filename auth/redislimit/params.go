package redislimit

import (
	"fmt"
	"time"

	"github.com/keygate/keygate/auth"
)

// params is a Limit translated for the script: the emission interval T
// and the span of a full budget C = MaxBurst × T, in nanoseconds, as
// [auth.MemoryLimiter] computes them, so that both limiters decide alike.
type params struct {
	iv, span int64
}

// newParams validates l, which must not be zero, and translates it.
// [auth.Limit.Validate] bounds span to 10 years, so that every number the
// script handles (microseconds since 1970, plus at most span) stays far
// below 2^53, where doubles stop being exact.
func newParams(l auth.Limit) (params, error) {
	if err := l.Validate(); err != nil {
		return params{}, fmt.Errorf("%w: %w", ErrInvalidLimit, err)
	}
	iv := int64(l.Interval())
	return params{iv: iv, span: int64(l.MaxBurst()) * iv}, nil
}

// decision fills in a Decision from the script's answer: whether the
// request is (or would be) allowed, and d = max(TAT - now, 0) after the
// call, in nanoseconds.
func (p params) decision(allowed bool, d int64, l auth.Limit) auth.Decision {
	dec := auth.Decision{Allowed: allowed, Limit: l, Reset: time.Duration(d)}
	if allowed {
		// The largest k with d + k×T <= C.
		dec.Remaining = int((p.span - d) / p.iv)
	} else {
		// One more request fits once d + T - C has passed.
		dec.RetryAfter = time.Duration(d + p.iv - p.span)
	}
	return dec
}
