package relay

import (
	"errors"
	"net"
	"net/http"
	"time"
)

// Failed authentications are throttled per source address and per account,
// and logged (who and from where, never the password).
//
// Credentials are checked first and only failures are counted: a correct
// password always gets in, even while its account or its source is
// throttled, so an attacker cannot lock a device out by guessing wrong on
// its behalf. The price is that a throttled guess still learns whether it
// was right; that oracle is harmless because device passwords are 128
// random bits (at least minPasswordLen characters), so what the throttle
// bounds is the work and noise of wrong guesses: over the budget, a wrong
// guess is held for authFailureDelay before its 429 (Retry-After), which
// with the relay's bound on connections bounds the guesses it answers a
// second, and it is no longer logged one by one.
const (
	authFailureBurst = 20        // failures a source or an account may make at once ...
	authFailureRate  = 20.0 / 60 // ... and a second after that
	authFailureDelay = time.Second
	// authLogRate bounds the "throttled" log lines: one per source or
	// account a minute.
	authLogRate = 1.0 / 60
)

// authFailures counts failed authentications.
type authFailures struct {
	bySource  *limiter
	byAccount *limiter
	logged    *limiter // "throttled" lines
	delay     time.Duration
}

func newAuthFailures(now func() time.Time) *authFailures {
	return &authFailures{
		bySource:  newLimiter(authFailureRate, authFailureBurst, now),
		byAccount: newLimiter(authFailureRate, authFailureBurst, now),
		logged:    newLimiter(authLogRate, 1, now),
		delay:     authFailureDelay,
	}
}

// sourceKey is the throttling key of a remote address: the IP, or for IPv6
// its /64 (one subscriber's network, whose addresses are free to change).
func sourceKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// authFailed records a failed authentication from r (login is the user
// name given, reason why it failed) and returns the refusal: 429 after a
// delay when the source or the account is over its budget, else nil (the
// caller answers as it does for wrong credentials).
func (s *Server) authFailed(r *http.Request, login string, reason error) error {
	src := sourceKey(r.RemoteAddr)
	acct := "" // not an account: only the source counts
	if aci, _, err := parseLogin(login); err == nil {
		acct = aci.String()
	}
	okSrc, waitSrc := s.authFails.bySource.allow(src)
	okAcct, waitAcct := true, time.Duration(0)
	if acct != "" {
		okAcct, waitAcct = s.authFails.byAccount.allow(acct)
	}
	attrs := []any{"source", src, "account", acct, "path", r.URL.Path, "reason", reason.Error()}
	if okSrc && okAcct {
		s.log.Warn("authentication failed", attrs...)
		return nil
	}
	if ok, _ := s.authFails.logged.allow(src + " " + acct); ok {
		s.log.Warn("authentication failures throttled", attrs...)
	}
	t := time.NewTimer(s.authFails.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
	return tooManyRequests(max(waitSrc, waitAcct))
}

// errWrongCredentials: the account, device or password is wrong.
var errWrongCredentials = errors.New("wrong credentials")

// dummySalt stands in for the salt of a device that does not exist, so
// that a wrong login costs the same hash as a wrong password.
var dummySalt = make([]byte, 16)
