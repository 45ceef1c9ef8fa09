package roster

import "errors"

// ErrServerURL: a server URL cannot be made canonical.
var ErrServerURL = errors.New("roster: server URL")
