package auth_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/keygate/keygate/auth"
)

// Write an audit log: one JSON record per event. Successful requests are
// logged at Debug, so under an Info handler they are left out.
func ExampleNewSlogObserver() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{
		// Drop the time so that the output below does not change.
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	audit := auth.NewSlogObserver(logger)
	ctx := context.Background()

	audit.Observe(ctx, auth.Event{Kind: auth.EventKeyCreated, KeyID: "key_1", Project: "default"})
	audit.Observe(ctx, auth.Event{Kind: auth.EventAuthenticated, Method: auth.MethodAPIKey, KeyID: "key_1"})
	audit.Observe(ctx, auth.Event{
		Kind:     auth.EventAuthFailed,
		Hint:     "halfred_…a1B2",
		Status:   401,
		Err:      &auth.Error{Kind: auth.ErrInvalidCredential, Err: errors.New("keystore: key revoked")},
		Duration: 250 * time.Microsecond,
	})
	// Output:
	// {"level":"INFO","msg":"key.created","event":"key.created","key_id":"key_1","project":"default"}
	// {"level":"INFO","msg":"auth.failed","event":"auth.failed","hint":"halfred_…a1B2","status":401,"error":"auth: invalid credential: keystore: key revoked","duration_ms":0.25}
}
