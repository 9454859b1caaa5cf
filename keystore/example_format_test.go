package keystore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"

	"github.com/keygate/keygate/keystore"
)

func ExampleFormat_Parse() {
	f := keystore.DefaultFormat()
	for _, s := range []string{
		"halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As4",  // valid
		"halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As5",  // last character mistyped
		"HALFRED_j2ZlRIrhd6fGKP9VhMTNK54V6As4",  // wrong case
		"halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As",   // truncated
		"halfred_j2ZlRIrhd6fGKP9VhMTNK54V6A+4",  // not base62
		"halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As4 ", // trailing space
	} {
		k, err := f.Parse(s)
		switch {
		case err == nil:
			fmt.Println("ok:", k)
		case errors.Is(err, keystore.ErrChecksum):
			fmt.Println("typo:", err)
		case errors.Is(err, keystore.ErrMalformedKey):
			fmt.Println("malformed:", err)
		}
	}
	// Output:
	// ok: halfred_…6As4
	// typo: keystore: API key checksum mismatch: the key was mistyped or truncated
	// malformed: keystore: wrong API key prefix: API keys start with "halfred_"
	// malformed: keystore: wrong API key length: API keys are 36 characters long
	// malformed: keystore: invalid character in API key: after "halfred_", API keys contain only the letters A-Z and a-z and the digits 0-9
	// malformed: keystore: wrong API key length: API keys are 36 characters long
}

// A secret scanner finds candidates with Pattern, which checks the shape
// only, and keeps those that Parse accepts.
func ExampleFormat_Pattern() {
	f := keystore.DefaultFormat()
	text := `HALFRED_API_KEY=halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As4
curl -H "Authorization: Bearer halfred_0L0snBD49ZeT9YJHfjQdYu0muEPJ" ...
# not keys: halfred_0l0snBD49ZeT9YJHfjQdYu0muEPJ (bad checksum),
# HALFRED_Zm1qH04mjMhq6cWivW68zr32EItR, xhalfred_Zm1qH04mjMhq6cWivW68zr32EItR`
	fmt.Println(f.Pattern())
	for _, m := range f.Pattern().FindAllString(text, -1) {
		if k, err := f.Parse(m); err == nil {
			fmt.Println("leaked key:", k)
		} else {
			fmt.Println("look-alike:", f.Hint(m))
		}
	}
	// Output:
	// \bhalfred_[0-9A-Za-z]{28}\b
	// leaked key: halfred_…6As4
	// leaked key: halfred_…uEPJ
	// look-alike: halfred_…uEPJ
}

// Generate with a seeded reader gives reproducible keys, for tests; the
// default reader is crypto/rand.
func ExampleFormat_Generate() {
	var seed [32]byte
	copy(seed[:], "keygate test vector 1")
	f := keystore.MustFormat(keystore.WithRandom(rand.NewChaCha8(seed)))
	k, err := f.Generate()
	if err != nil {
		panic(err)
	}
	fmt.Println(k.Plaintext())
	fmt.Println(len(k.Plaintext()) == f.Len())
	// Output:
	// halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As4
	// true
}

// Printing, logging or encoding a Key shows its hint; only Plaintext gives
// the key.
func ExampleKey() {
	k, err := keystore.DefaultFormat().Parse("halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As4")
	if err != nil {
		panic(err)
	}
	fmt.Println(k)
	fmt.Printf("%s %q %#v\n", k, k, k)
	fmt.Printf("%+v\n", struct {
		Name string
		Key  keystore.Key
	}{"ci", k})

	b, _ := json.Marshal(map[string]any{"key": k})
	fmt.Println(string(b))

	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: noTime})).Info("issued", "key", k)

	fmt.Println(k.Plaintext())
	// Output:
	// halfred_…6As4
	// halfred_…6As4 "halfred_…6As4" keystore.Key("halfred_…6As4")
	// {Name:ci Key:halfred_…6As4}
	// {"key":"halfred_…6As4"}
	// level=INFO msg=issued key=halfred_…6As4
	// halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As4
}

func ExampleNewHasher() {
	// In production the pepper comes from a secret manager: 32 random bytes.
	oldPepper := []byte("example-pepper-1-0123456789abcde")
	newPepper := []byte("example-pepper-2-0123456789abcde")
	key := "halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As4"

	before, err := keystore.NewHasher(oldPepper)
	if err != nil {
		panic(err)
	}
	stored := before.Digest(key) // what the store kept

	// After rotation, new digests use the new pepper and the old one is
	// still tried.
	h, err := keystore.NewHasher(newPepper, oldPepper)
	if err != nil {
		panic(err)
	}
	fmt.Println(h)
	fmt.Println(h.Digest(key) == stored)
	for i := range h.Peppers() {
		if h.DigestAt(i, key) == stored {
			fmt.Println("found under pepper", i)
		}
	}

	_, err = keystore.NewHasher([]byte("short"))
	fmt.Println(err)
	// Output:
	// keystore.Hasher(HMAC-SHA-256, 2 peppers)
	// false
	// found under pepper 1
	// keystore: pepper must be at least 16 bytes
}
