package main

import "github.com/signal-mpc/cosigner/node"

// The co-signer itself is package node's; these names keep the commands'
// code short.
type (
	console       = node.Node
	consoleConfig = node.Config
	coreVault     = node.Vault
	messenger     = node.Messenger
)

var openConsole = node.Open
