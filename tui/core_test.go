package tui

import "github.com/signal-mpc/cosigner/core"

// *core.App is what main hands the console.
var _ Core = (*core.App)(nil)
