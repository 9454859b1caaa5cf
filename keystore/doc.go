// Package keystore issues, stores and verifies API keys: the key format,
// the hashing that turns a key into what a store keeps, the records and the
// [Store] interface, an in-memory store, and the [Manager] that ties them
// together and plugs into package auth as an authenticator.
//
// # Key format
//
// A key of the default [Format] is 36 characters:
//
//	halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As4
//	└──┬───┘└────────┬───────────┘└─┬──┘
//	prefix   22 random base62    checksum
//
// The prefix ("halfred" and '_') says what the string is, to people and to
// secret scanners ([Format.Pattern]). The 22 random characters carry about
// 131 bits from crypto/rand, drawn without modulo bias. The last 6
// characters are the base62 CRC-32 of the rest, so [Format.Parse] rejects a
// mistyped or truncated key, and a scanner drops look-alikes, without a
// store lookup. Only [0-9A-Za-z] follows the prefix: a key survives URLs,
// headers, shells and double-clicks unchanged. Parse checks untrusted input
// in a fixed order (length cap, prefix, length, characters, checksum), with
// one error sentinel per failure and no allocation. Prefix, separator,
// length and checksum are configurable with [NewFormat]; fewer than 128
// random bits is refused.
//
// A [Key] is the secret itself. Printing, logging or encoding it shows only
// its hint ("halfred_…6As4"); [Key.Plaintext] is the one way to the key.
//
// # Hash, then look up
//
// A store never sees a key, only its [Digest]: HMAC-SHA-256 under a
// server-side pepper, or SHA-256 (see [Hasher]). Verifying a presented key
// hashes it and looks the digest up ([Lookuper.LookupDigest]) as an exact
// match, so a leaked database yields no usable key, the lookup is one index
// probe, and no comparison in the request path depends on how much of a
// guess was right. The hash is fast on purpose: random 128-bit keys need no
// password hash, and a slow one would make every request expensive (the
// [Hasher] documentation has the measurements). Peppers can be rotated.
//
// # Records, stores and the manager
//
// A [Record] is what a store keeps about a key: its ID, project, name, hint,
// digest, scopes, times and flags. [Store] is the interface a service
// implements over its own database, with optional [Toucher], [Disabler]
// and [UsageWriter] capabilities; [MemoryStore] is an in-memory
// implementation. Package storetest (keystore/storetest) is the
// conformance suite every store should pass. [Manager] issues, verifies,
// lists, revokes and rotates keys over a Format, a Hasher and a Store.
//
// # Caching, invalidation and usage
//
// A [CachedStore] in front of any store serves the request path from
// memory; with [WithInvalidationFeed] it is kept right by a feed of
// [Invalidation] messages (keystore/sqlstore's PostgreSQL LISTEN/NOTIFY, or
// keystore/redisfeed's Redis pub/sub) and stops trusting its entries when
// the feed is down. A [UsageRecorder], given to the auth Guard as an
// Observer, counts requests per key in memory and writes them to a
// [UsageWriter] in batches, so that store writes stay bounded however many
// requests arrive.
package keystore
