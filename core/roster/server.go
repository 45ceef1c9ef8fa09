package roster

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// maxServerLen bounds a server URL on a card.
const maxServerLen = 256

// CanonicalServer returns the canonical form of a Signal server's URL, the
// form cards carry and consoles compare: two consoles share a server when
// these strings are equal. The scheme (http or https) and the host are
// lower-cased, the scheme's default port is dropped (any other is written
// in decimal, without leading zeros), the path is re-encoded from its
// decoded form and loses its trailing slashes. A URL with user
// information, a query, a fragment, an IPv6 zone or another scheme is
// refused rather than cut down: it would not name one server plainly.
func CanonicalServer(raw string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: %s", ErrServerURL, why)
	}
	if raw == "" || len(raw) > maxServerLen {
		return bad(fmt.Sprintf("want 1..%d bytes", maxServerLen))
	}
	if strings.ContainsAny(raw, "?#") {
		return bad("a query or fragment does not name a server")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("not a URL")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return bad("want an https:// or http:// URL")
	}
	if u.Opaque != "" || u.User != nil {
		return bad("user information or an opaque part does not name a server")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return bad("no host")
	}
	if strings.ContainsAny(host, "%[]") {
		return bad("IPv6 zones are not allowed")
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return bad("port must be 1..65535")
		}
		if !(scheme == "https" && n == 443 || scheme == "http" && n == 80) {
			host += ":" + strconv.FormatUint(n, 10)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return bad("empty port")
	}
	path := strings.TrimRight((&url.URL{Path: u.Path}).EscapedPath(), "/")
	out := scheme + "://" + host + path
	if len(out) > maxServerLen {
		return bad(fmt.Sprintf("want at most %d bytes", maxServerLen))
	}
	return out, nil
}
