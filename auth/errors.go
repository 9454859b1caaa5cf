package auth

import (
	"errors"
	"strings"
	"time"
)

// Sentinel errors. Every error this package returns, and every error an
// [Authenticator] should return, matches one of them under [errors.Is]; the
// default [ErrorHandler] maps each to one HTTP status.
var (
	// ErrNoCredentials means the request carried no credentials at all
	// (401, WWW-Authenticate without an error code).
	ErrNoCredentials = errors.New("auth: no credentials")
	// ErrInvalidCredential means the credential is malformed, unknown,
	// revoked, expired or disabled (401, error="invalid_token").
	ErrInvalidCredential = errors.New("auth: invalid credential")
	// ErrMalformedRequest means the request's credential syntax is wrong:
	// two different credentials, a bad Authorization header
	// (400, error="invalid_request").
	ErrMalformedRequest = errors.New("auth: malformed request")
	// ErrInsufficientScope means the credential is valid but lacks a scope
	// the endpoint needs (403, error="insufficient_scope").
	ErrInsufficientScope = errors.New("auth: insufficient scope")
	// ErrRateLimited means the caller sent too many requests (429).
	ErrRateLimited = errors.New("auth: rate limited")
	// ErrUnavailable means the credential could not be checked because a
	// back end (the key store) failed or timed out (503). The request is
	// never served, and the failure is never remembered as a bad credential.
	ErrUnavailable = errors.New("auth: credential store unavailable")
	// ErrInternal means an authenticator panicked or broke its contract
	// (500). The request is not served.
	ErrInternal = errors.New("auth: internal error")
)

// Error is an authentication failure with the details the HTTP response
// needs. Kind is one of this package's sentinels; Message is shown to the
// caller and must never contain a credential; Err is the underlying cause,
// for Go callers and logs.
//
// errors.Is(e, Kind) and errors.Is(e, Err) both hold, and neither
// allocates.
type Error struct {
	// Kind is the class of the failure: ErrInvalidCredential and so on.
	Kind error
	// Message is safe to show the caller, such as
	// "API keys start with halfred_". Empty means a generic message.
	Message string
	// Scopes lists the scopes that were needed, for ErrInsufficientScope.
	Scopes []string
	// RetryAfter says when to try again, for ErrRateLimited.
	RetryAfter time.Duration
	// Err is the cause; it may be nil.
	Err error
}

// Error returns the kind, the message and the cause, in that order.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Kind != nil {
		b.WriteString(e.Kind.Error())
	} else {
		b.WriteString("auth: error")
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Is reports whether target is e's Kind, so that errors.Is(e, ErrInvalidCredential)
// holds for an Error of that kind. It does not allocate.
func (e *Error) Is(target error) bool {
	return e != nil && e.Kind != nil && errors.Is(e.Kind, target)
}

// Unwrap returns the cause, Err, so that errors.Is and errors.As reach it.
func (e *Error) Unwrap() error {
	if e == nil {
		return nil
	}
	return e.Err
}

var errUnrecognised = &Error{Kind: ErrInvalidCredential, Message: "The credential is not in a format this service accepts."}
