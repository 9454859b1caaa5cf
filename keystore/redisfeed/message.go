package redisfeed

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/keygate/keygate/keystore"
)

// maxMessage is the largest message [parseMessage] accepts. A message
// names one key: its ID and a 64-digit digest, far below this.
const maxMessage = 4096

var errMessage = errors.New("redisfeed: malformed message")

// message is the payload of one invalidation: {"id": ID, "digest": 64
// lowercase hex digits}, the same shape as the PostgreSQL feed's
// notifications. The digest is left out when it is not known.
type message struct {
	ID     string `json:"id"`
	Digest string `json:"digest,omitempty"`
}

// encodeMessage returns the payload announcing a change to the key with
// this ID and digest (which may be zero).
func encodeMessage(id string, d keystore.Digest) (string, error) {
	m := message{ID: id}
	if !d.IsZero() {
		m.Digest = d.String()
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// parseMessage parses a payload made by [encodeMessage]. It requires a
// non-empty ID and accepts a missing or empty digest (the zero Digest),
// digits in either case, and unknown fields (for messages from newer
// versions). Messages over 4 KiB are rejected unread. On error the results
// are empty; the error never contains the payload.
func parseMessage(s string) (string, keystore.Digest, error) {
	var d keystore.Digest
	if len(s) > maxMessage {
		return "", d, fmt.Errorf("%w: longer than %d bytes", errMessage, maxMessage)
	}
	var m message
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return "", d, fmt.Errorf("%w: not a JSON object with string fields id and digest", errMessage)
	}
	if m.ID == "" {
		return "", d, fmt.Errorf("%w: no id", errMessage)
	}
	if m.Digest != "" {
		if len(m.Digest) != 2*keystore.DigestSize {
			return "", d, fmt.Errorf("%w: digest is not %d hex digits", errMessage, 2*keystore.DigestSize)
		}
		if _, err := hex.Decode(d[:], []byte(m.Digest)); err != nil {
			return "", keystore.Digest{}, fmt.Errorf("%w: digest is not hex", errMessage)
		}
	}
	return m.ID, d, nil
}
