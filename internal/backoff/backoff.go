// Package backoff computes the delays between reconnection attempts of
// keygate's invalidation feeds (keystore/sqlstore and keystore/redisfeed):
// exponential, capped and jittered, and waits them out unless a context
// ends first. It is internal to keygate.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy describes an exponential backoff: the first delay is Min, each
// next one twice the last, up to Max; each delay d is then shortened at
// random by up to Jitter×d. A Max below Min counts as Min. Jitter must be
// within [0, 1]; callers clamp what users give them. The zero Policy waits
// not at all. A Policy is a plain value, safe to copy.
type Policy struct {
	Min, Max time.Duration
	Jitter   float64
}

// SetBounds sets Min to initial and Max to max, each only if it is
// positive: the rule of the feeds' WithBackoff options, whose non-positive
// arguments keep the default.
func (p *Policy) SetBounds(initial, max time.Duration) {
	if initial > 0 {
		p.Min = initial
	}
	if max > 0 {
		p.Max = max
	}
}

// Backoff is the state of one retry loop following a [Policy]. It is not
// safe for concurrent use: one goroutine owns it. Make it with [New].
type Backoff struct {
	p     Policy
	delay time.Duration
}

// New returns a Backoff following p whose next delay is p.Min. A p.Max
// below p.Min is raised to p.Min.
func New(p Policy) *Backoff {
	p.Max = max(p.Max, p.Min)
	return &Backoff{p: p, delay: p.Min}
}

// Max returns the largest delay before jitter: the Policy's Max, or its
// Min if that is larger.
func (b *Backoff) Max() time.Duration { return b.p.Max }

// Next returns the delay to wait now, the current delay jittered, and
// doubles the current delay, up to Max.
func (b *Backoff) Next() time.Duration {
	d := Jitter(b.delay, b.p.Jitter)
	b.delay = min(2*b.delay, b.p.Max)
	return d
}

// Reset makes the next delay the Policy's Min again.
func (b *Backoff) Reset() { b.delay = b.p.Min }

// Wait waits for the next delay ([Backoff.Next]) or until ctx is done,
// and reports whether the whole delay passed.
func (b *Backoff) Wait(ctx context.Context) bool { return Sleep(ctx, b.Next()) }

// Retry calls attempt after each of b's delays, the first one included,
// until it succeeds, and returns its result and true; once ctx is done it
// returns the zero T and false. Each failure, unless ctx is done by then,
// is passed to failed (which typically logs it) before the next delay.
// Retry does not Reset b: the caller decides when a success has lasted.
func Retry[T any](ctx context.Context, b *Backoff, attempt func(context.Context) (T, error), failed func(error)) (T, bool) {
	var zero T
	for {
		if !b.Wait(ctx) {
			return zero, false
		}
		v, err := attempt(ctx)
		if err == nil {
			return v, true
		}
		if ctx.Err() != nil {
			return zero, false
		}
		failed(err)
	}
}

// Sleep waits d or until ctx is done, and reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Jitter returns a duration in [d×(1−frac), d], for frac in [0, 1]. It need
// not be unpredictable, and is not. A non-positive d, or a frac that gives
// no room, returns d.
func Jitter(d time.Duration, frac float64) time.Duration {
	span := time.Duration(float64(d) * frac)
	if d <= 0 || span <= 0 {
		return d
	}
	return d - rand.N(span+1)
}
