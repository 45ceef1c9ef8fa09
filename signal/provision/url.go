package provision

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/url"
	"strings"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
)

// maxURLSize bounds the link URLs ParseLinkURL accepts.
const maxURLSize = 4096

// LinkURL builds the URL the primary scans:
//
//	sgnl://linkdevice?uuid=<address>&pub_key=<b64 std, padded>&capabilities=<a,b>
//
// as Desktop does (URLSearchParams): parameters in this order, values
// form-encoded so that + / = and , are percent-escaped. The capabilities
// parameter is always present, empty when there are none.
func LinkURL(address string, publicKey []byte, capabilities ...string) string {
	var b strings.Builder
	b.WriteString("sgnl://linkdevice?uuid=")
	b.WriteString(url.QueryEscape(address))
	b.WriteString("&pub_key=")
	b.WriteString(url.QueryEscape(base64.StdEncoding.EncodeToString(publicKey)))
	// An empty capabilities parameter tells the phone nothing; leaving it
	// out keeps the QR code a size smaller (it must fit 80x24).
	if len(capabilities) > 0 {
		b.WriteString("&capabilities=")
		b.WriteString(url.QueryEscape(strings.Join(capabilities, ",")))
	}
	return b.String()
}

// ParseLinkURL reads the provisioning address and the new device's public
// key from a link URL (the primary's side). It accepts the current
// sgnl://linkdevice form and the legacy tsdevice:/ form, reads only uuid and
// pub_key (as Signal's phones do), and checks that the key is 0x05 || 32
// bytes. A '+' that arrives unescaped (decoded as a space) is restored.
func ParseLinkURL(s string) (address string, publicKey []byte, err error) {
	if len(s) > maxURLSize {
		return "", nil, fmt.Errorf("%w: longer than %d bytes", ErrBadLinkURL, maxURLSize)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrBadLinkURL, err)
	}
	switch {
	case u.Scheme == "sgnl" && u.Host == "linkdevice":
	case u.Scheme == "tsdevice":
	default:
		return "", nil, fmt.Errorf("%w: scheme %q host %q", ErrBadLinkURL, u.Scheme, u.Host)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", nil, fmt.Errorf("%w: query: %v", ErrBadLinkURL, err)
	}
	address = q.Get("uuid")
	if address == "" || len(q["uuid"]) != 1 {
		return "", nil, fmt.Errorf("%w: want exactly one non-empty uuid", ErrBadLinkURL)
	}
	if len(q["pub_key"]) != 1 {
		return "", nil, fmt.Errorf("%w: want exactly one pub_key", ErrBadLinkURL)
	}
	enc := strings.ReplaceAll(q.Get("pub_key"), " ", "+")
	publicKey, err = decodeBase64(enc)
	if err != nil {
		return "", nil, fmt.Errorf("%w: pub_key: %v", ErrBadLinkURL, err)
	}
	if _, err := parsePublic(publicKey); err != nil {
		return "", nil, fmt.Errorf("%w: pub_key: %w", ErrBadLinkURL, err)
	}
	return address, publicKey, nil
}

// decodeBase64 accepts the standard alphabet with or without padding.
func decodeBase64(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") {
		return base64.StdEncoding.Strict().DecodeString(s)
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}

// SealToURL is the primary's side in one call: it reads the new device's
// provisioning address and public key from its link URL and encrypts msg
// to that key. The caller sends the envelope with
// PUT /v1/provisioning/{address} as {"body": b64(envelope)}.
func SealToURL(r io.Reader, linkURL string, msg *signalpb.ProvisionMessage) (address string, envelope []byte, err error) {
	address, pub, err := ParseLinkURL(linkURL)
	if err != nil {
		return "", nil, err
	}
	envelope, err = Seal(r, pub, msg)
	if err != nil {
		return "", nil, err
	}
	return address, envelope, nil
}
