package tui

import "strconv"

func (m *Model) setRoster(r Roster) {
	m.signers = m.signers[:0]
	for _, s := range r.Signers {
		s.Name, s.Account, s.Fingerprint = Clean(s.Name), Clean(s.Account), Clean(s.Fingerprint)
		m.signers = append(m.signers, s)
	}
}

// rosterView lists the signers: name, state, address, and the fingerprint
// two humans read to each other (on its own line: it is 71 cells wide).
func (m *Model) rosterView(h int) []string {
	st := m.st
	verified := 0
	for _, s := range m.signers {
		if s.Verified {
			verified++
		}
	}
	lines := []string{st.Title.Render("Roster") + st.Dim.Render(" "+itoa(len(m.signers))+" signers, "+itoa(verified)+" verified · cosigner group verify NAME")}
	if len(m.signers) == 0 {
		return append(lines, st.Dim.Render("no signers yet: cosigner group add CARD"))
	}
	var rows []string
	for _, s := range m.signers {
		var state string
		switch {
		case s.Blocked:
			state = st.Error.Render("✕ keys changed: verify again")
		case s.Self:
			state = st.OK.Render("● this console")
		case s.Verified:
			state = st.OK.Render("✓ verified")
		default:
			state = st.Warn.Render("? not verified (trusted on first use)")
		}
		rows = append(rows, st.Peer.Render(pad(s.Name, 12))+" "+state+"  "+st.Dim.Render(shortAccount(s.Account, 0)+"."+strconv.FormatUint(uint64(s.Device), 10)))
		rows = append(rows, "  "+s.Fingerprint)
	}
	win, top := window(rows, m.rosterY, h-1)
	m.rosterY = top
	return append(lines, win...)
}
