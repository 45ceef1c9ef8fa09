// Package tui is the cosigner console: a Bubble Tea program with a link
// screen (the QR code a Signal phone scans) and a main screen (status bar,
// live MPC log, per-round ceremony progress, approval queue with an armed
// review, signatures history, roster, and forms to start a keygen or a
// signing request).
//
// Everything reaches the program as a message: core's events through one
// bridge goroutine ([Bridge]), and the few things core does not publish
// (linking, roster, identity) as the plain message types of messages.go,
// sent by main with [tea.Program.Send]. Update and View never block: every
// call into core runs in a [tea.Cmd] and comes back as a message.
//
// Wiring, in main:
//
//	m := tui.New(ctx, app, tui.WithIdentity(tui.Identity{Name: "alice", Account: acct, Device: 2, Server: url}),
//		tui.WithLinking(!linked), tui.WithClipboard(os.Stdout), tui.WithLogger(fileLogger))
//	p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx))
//	sub := bus.Subscribe(0)
//	go tui.Bridge(ctx, sub, p.Send)
//	// while linking: p.Send(tui.LinkURL{...}), p.Send(tui.LinkStep{...}), then p.Send(tui.Linked{...})
//	// roster at start and after changes: p.Send(tui.Roster{...})
//	_, err := p.Run()
//
// Strings that come from outside (message text, descriptions, peer names,
// errors, the link URL) are made inert by [Clean] before they are stored, so
// no escape sequence ever reaches the terminal.
package tui
