package relay

import "errors"

// Sentinel errors of the package. Callers branch on them with errors.Is.
var (
	// ErrConfig: the configuration is unusable (missing data dir, half a TLS
	// pair, a listen address that does not parse).
	ErrConfig = errors.New("relay: bad configuration")
	// ErrInsecureListen: the listen address reaches beyond loopback, there is
	// no TLS, and Config.AllowInsecure is not set.
	ErrInsecureListen = errors.New("relay: refusing to serve plain HTTP beyond loopback")
	// ErrStore: the database could not be opened or is damaged.
	ErrStore = errors.New("relay: store")
	// ErrDamaged: the database file is damaged (empty, truncated, pages
	// overwritten); it was left as it is. Comes with ErrStore.
	ErrDamaged = errors.New("the store is damaged: restore it from a backup")
	// ErrBadServiceID: a service id is neither a UUID nor PNI:<UUID>.
	ErrBadServiceID = errors.New("relay: bad service id")
	// ErrChallengeToken: a challenge token is not one this relay makes.
	ErrChallengeToken = errors.New("relay: not a challenge token")
	// ErrAlreadyRunning: Run was called twice.
	ErrAlreadyRunning = errors.New("relay: Run called twice")
)
