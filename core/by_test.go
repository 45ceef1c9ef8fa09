package core

import "testing"

func TestParseByReadsUserSSHClientAndRule(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, by, user, ssh, rule string
	}{
		{"own screen", "", "", "", ""},
		{"socket", "socket uid=1000 user=ops pid=4242", "ops", "", ""},
		{"socket over ssh", "socket uid=1000 user=ops pid=4242 ssh_client=192.0.2.7:52722", "ops", "192.0.2.7:52722", ""},
		{"ipv6 client", "socket uid=0 user=root pid=1 ssh_client=[2001:db8::7]:22", "root", "[2001:db8::7]:22", ""},
		{"peer unknown over ssh", "socket (peer unknown) ssh_client=10.0.0.5:2222", "", "10.0.0.5:2222", ""},
		{"signing rule", "signing.rule[0]", "", "", "signing.rule[0]"},
		{"keygen rule", "keygen.rule[3]", "", "", "keygen.rule[3]"},
		{"auto approve", "signing.auto_approve", "", "", "signing.auto_approve"},
		{"first of repeated fields", "user=a user=b ssh_client=1.2.3.4:5 ssh_client=6.7.8.9:10", "a", "1.2.3.4:5", ""},
		{"empty values", "socket user= ssh_client=", "", "", ""},
		{"not a rule", "signing.rules", "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			user, ssh, rule := ParseBy(c.by)
			if user != c.user || ssh != c.ssh || rule != c.rule {
				t.Fatalf("ParseBy(%q) = %q, %q, %q; want %q, %q, %q", c.by, user, ssh, rule, c.user, c.ssh, c.rule)
			}
		})
	}
}
