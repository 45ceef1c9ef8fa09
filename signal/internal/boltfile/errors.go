package boltfile

import "errors"

// ErrDamaged: the file is not a whole bbolt file: bbolt would panic, fault
// or silently fall back to an older commit on it.
var ErrDamaged = errors.New("damaged bbolt file")
