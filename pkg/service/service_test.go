package service

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// checkParse checks a parser of names: each good name parses to its value
// and prints back as itself; each bad one is an error that quotes it.
func checkParse[T comparable](t *testing.T, parse func(string) (T, error), good map[string]T, bad []string) {
	t.Helper()
	for in, want := range good {
		got, err := parse(in)
		if err != nil || got != want {
			t.Errorf("parse(%q) = %v, %v; want %v", in, got, err, want)
		}
		if s := fmt.Sprint(got); s != in {
			t.Errorf("%q parses to a value that prints as %q", in, s)
		}
	}
	for _, in := range bad {
		got, err := parse(in)
		if err == nil {
			t.Errorf("parse(%q) = %v, want an error", in, got)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("parse(%q): %q does not quote the input", in, err)
		}
	}
}

func TestParseProtocol(t *testing.T) {
	checkParse(t, ParseProtocol, map[string]Protocol{"tcp": TCP, "udp": UDP},
		[]string{"", "TCP", "Udp", " tcp", "sctp", "6", "protocol(6)"})
}

func TestParseKeyKind(t *testing.T) {
	checkParse(t, ParseKeyKind, map[string]KeyKind{"flow": KeyFlow, "client": KeyClient, "gtpu-inner": KeyGTPUInner},
		[]string{"", "Flow", "gtpu", "gtpu_inner", "source", "0"})
}

func TestParsePool(t *testing.T) {
	checkParse(t, ParsePool, map[string]Pool{"stable": Stable, "canary": Canary},
		[]string{"", "Stable", "blue", "green", "0"})
}

func TestUnknownValuesPrint(t *testing.T) {
	for _, c := range []struct {
		v    fmt.Stringer
		want string
	}{
		{Protocol(0), "protocol(0)"},
		{Protocol(132), "protocol(132)"},
		{KeyKind(9), "key(9)"},
		{Pool(7), "pool(7)"},
	} {
		if got := c.v.String(); got != c.want {
			t.Errorf("%T: %q, want %q", c.v, got, c.want)
		}
	}
}

func TestFrontend(t *testing.T) {
	for _, c := range []struct {
		vip   string
		port  uint16
		proto Protocol
		want  string
	}{
		{"10.0.0.10", 80, TCP, "10.0.0.10:80/tcp"},
		{"::ffff:10.0.0.10", 80, TCP, "10.0.0.10:80/tcp"}, // one frontend, however written
		{"2001:db8::10", 2152, UDP, "[2001:db8::10]:2152/udp"},
	} {
		s := Service{VIP: netip.MustParseAddr(c.vip), Port: c.port, Protocol: c.proto}
		if got := s.Frontend().String(); got != c.want {
			t.Errorf("frontend of %s: %q, want %q", c.vip, got, c.want)
		}
	}
}

func TestBackends(t *testing.T) {
	s := valid()
	if !reflect.DeepEqual(s.Backends(Stable), s.Stable) || !reflect.DeepEqual(s.Backends(Canary), s.Canary) {
		t.Errorf("Backends: %v, %v", s.Backends(Stable), s.Backends(Canary))
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"a": true, "auth": true, "auth-v2": true, "0": true, strings.Repeat("a", 63): true,
		"": false, strings.Repeat("a", 64): false, "Auth": false, "auth_v2": false, "auth.v2": false, "auth v2": false, "é": false,
	} {
		if got := ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v", name, got)
		}
	}
}
