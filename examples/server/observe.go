package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
)

// newUsageRecorder returns the recorder that counts each key's requests
// and writes the counts, the last-used time and the last client address
// to cfg.store every cfg.usageInterval (never in the background when
// zero). It returns nil, and logs why, when the store cannot record usage.
func newUsageRecorder(cfg config) (*keystore.UsageRecorder, error) {
	w, ok := cfg.store.(keystore.UsageWriter)
	if !ok {
		cfg.logger.Warn("the key store cannot record usage: GET /v1/keys shows no usage counts", "store", fmt.Sprintf("%T", cfg.store))
		return nil, nil
	}
	r, err := keystore.NewUsageRecorder(w,
		keystore.WithUsageInterval(cfg.usageInterval),
		keystore.WithUsageClock(cfg.now),
		keystore.WithUsageLogger(cfg.logger),
	)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		cfg.logger.Warn("the key store cannot record usage: GET /v1/keys shows no usage counts", "error", err)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("usage recorder: %w", err)
	}
	return r, nil
}

// usageObserver returns r as an Observer, or nil for a nil r (a nil
// *UsageRecorder in an interface would not be nil).
func usageObserver(r *keystore.UsageRecorder) auth.Observer {
	if r == nil {
		return nil
	}
	return r
}

// newAuditObserver returns the audit log: every event of the Guard, the
// key Manager and the token Service as one record of logger (JSON on
// standard error by default), such as
//
//	{"time":…,"level":"INFO","msg":"key.revoked","event":"key.revoked","key_id":"key_…","project":"default","by":"key_…"}
//
// Successful authentications are logged at Debug, so not by default.
// Records never hold a key or a token: events carry key IDs and masked
// hints only.
func newAuditObserver(logger *slog.Logger) auth.Observer {
	return auth.NewSlogObserver(slog.New(actorHandler{logger.Handler()}))
}

// actorHandler adds to each record logged with a request's context the
// caller that made the request, when the context carries one: "by", the
// caller's key ID (or, for an identity provider's token, "by_subject",
// its subject). So the audit record of a key revoked through DELETE
// /v1/keys/{id} says whose key revoked it.
type actorHandler struct{ slog.Handler }

func (h actorHandler) Handle(ctx context.Context, r slog.Record) error {
	if p, ok := auth.FromContext(ctx); ok {
		r = r.Clone()
		switch {
		case p.KeyID != "":
			r.AddAttrs(slog.String("by", p.KeyID))
		case p.Subject != "":
			r.AddAttrs(slog.String("by_subject", p.Subject))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h actorHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return actorHandler{h.Handler.WithAttrs(attrs)}
}

func (h actorHandler) WithGroup(name string) slog.Handler {
	return actorHandler{h.Handler.WithGroup(name)}
}
