package store

import "errors"

// Sentinel errors. Messages name buckets, ids and addresses, never secrets.
var (
	// ErrWrongPassphrase: the passphrase does not open this store (or the
	// store is keyed by a key file and a passphrase was given).
	ErrWrongPassphrase = errors.New("store: wrong passphrase")
	// ErrPassphraseRequired: the store is encrypted with a passphrase and
	// none was given.
	ErrPassphraseRequired = errors.New("store: passphrase required")
	// ErrKeyFile: the key file of a store without a passphrase is missing,
	// malformed, or does not open the store.
	ErrKeyFile = errors.New("store: bad or missing key file")
	// ErrLocked: another process holds the store open.
	ErrLocked = errors.New("store: locked by another process")
	// ErrCorrupt: a record or the header does not decrypt or decode.
	ErrCorrupt = errors.New("store: corrupt record")
	// ErrDamaged: the store file is damaged (empty, truncated, pages
	// overwritten): it was not opened and is left as it is. Nothing in it
	// can be trusted; a backup (cosigner backup) brings it back.
	ErrDamaged = errors.New("the store is damaged: restore it from a backup")
	// ErrNotFound: no such record (account, prekey, signed prekey, kyber prekey).
	ErrNotFound = errors.New("store: not found")
	// ErrIdentityChanged: a remote address presented an identity key other
	// than the one pinned for it. Messaging with it stays blocked until a
	// human verifies the new key and calls TrustIdentity.
	ErrIdentityChanged = errors.New("store: remote identity key changed")
	// ErrNoIdentity: the account has no identity key pair of the kind asked.
	ErrNoIdentity = errors.New("store: no local identity of that kind")
	// ErrInvalidArgument: a caller error (nil record, unknown identity kind).
	ErrInvalidArgument = errors.New("store: invalid argument")
	// ErrClosed: the store was closed before the write could run.
	ErrClosed = errors.New("store: closed")
	// ErrPanicked: an operation's function panicked (libsignal does on some
	// malformed input); its writes were undone.
	ErrPanicked = errors.New("store: operation panicked")
)
