package keystore

import "errors"

// Errors of [Format.Parse] and [Format.Generate]. Each Parse failure matches
// ErrMalformedKey and exactly one of the more specific sentinels under
// [errors.Is]. Their messages help the caller ("API keys start with
// halfred_") and never contain the key.
var (
	// ErrMalformedKey matches every reason Parse rejects a string.
	ErrMalformedKey = errors.New("keystore: malformed API key")
	// ErrPrefix: the key is missing the format's prefix and separator, or
	// has them in the wrong case or with another separator.
	ErrPrefix = errors.New("keystore: wrong API key prefix")
	// ErrLength: the key has the right prefix but the wrong length.
	ErrLength = errors.New("keystore: wrong API key length")
	// ErrCharset: the key contains a character outside base62, including
	// whitespace, padding, percent-encoding and look-alike Unicode.
	ErrCharset = errors.New("keystore: invalid character in API key")
	// ErrChecksum: the key's checksum does not match (a typo or a
	// truncated copy).
	ErrChecksum = errors.New("keystore: API key checksum mismatch")
	// ErrWeakFormat: a Format would give keys with fewer than 128 bits of
	// randomness, or is otherwise unusable.
	ErrWeakFormat = errors.New("keystore: invalid key format")
)

// Errors of a [Store]. A store returns ErrNotFound, ErrExists or
// ErrAlreadyRevoked (possibly wrapped) for the situations documented on each
// method; any other error means the back end failed, and callers treat it as
// "unavailable", never as "no such key".
var (
	// ErrNotFound: no record has that digest or ID.
	ErrNotFound = errors.New("keystore: not found")
	// ErrExists: a record with that ID or digest already exists.
	ErrExists = errors.New("keystore: already exists")
	// ErrAlreadyRevoked: Replace was asked to replace a key that is
	// already revoked, or already replaced.
	ErrAlreadyRevoked = errors.New("keystore: key already revoked")
)

// Errors of [Manager.Verify]. A presented key that is not good fails with
// exactly one of these (or with a Parse error); the HTTP layer answers all of
// them with the same 401 response, byte for byte, so a caller cannot tell an
// unknown key from a revoked one.
var (
	// ErrUnknownKey: no key has that digest, under the current pepper or a
	// previous one.
	ErrUnknownKey = errors.New("keystore: unknown API key")
	// ErrRevoked: the key was revoked (or replaced, and its grace period
	// is over).
	ErrRevoked = errors.New("keystore: API key revoked")
	// ErrExpired: the key's expiry time has passed.
	ErrExpired = errors.New("keystore: API key expired")
	// ErrDisabled: the key is disabled (its account is suspended) until
	// it is enabled again.
	ErrDisabled = errors.New("keystore: API key disabled")
)

// Errors of the [Manager]'s management calls.
var (
	// ErrInvalidSpec: a [KeySpec] or a rotation request is unusable: no
	// project, a scope that is not a valid scope token, an expiry in the
	// past, a negative grace period.
	ErrInvalidSpec = errors.New("keystore: invalid key spec")
)

// ErrMalformedInvalidation matches every error of [ParseInvalidation] (and
// [Invalidation.UnmarshalText]): the message is too long, not a JSON
// object, has no "id", or a "digest" that is not 64 hex digits. Its
// messages never contain the input.
var ErrMalformedInvalidation = errors.New("keystore: malformed invalidation message")
