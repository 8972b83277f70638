package service

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseWeight(t *testing.T) {
	good := map[string]Weight{
		"0": 0, "0%": 0, "0.01%": 1, "0.1": 10, "0.25%": 25, "5": 500, "5%": 500, " 5 % ": 500,
		"50.5%": 5050, "100": 10000, "100%": 10000, "100.00%": 10000, "0005": 500, ".5": 50,
	}
	for in, want := range good {
		got, err := ParseWeight(in)
		if err != nil || got != want {
			t.Errorf("ParseWeight(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"101%": "above 100%", "100.01": "above 100%", "1000": "above 100%", "0.001%": "two decimals",
		"-1": "not a weight", "abc": "not a weight", "": "not a weight", "%": "not a weight",
		"5%%": "not a weight", "5.": "not a weight", "1e2": "not a weight", "0x10": "not a weight",
	}
	for in, want := range bad {
		if _, err := ParseWeight(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseWeight(%q): error %v, want one saying %q", in, err, want)
		}
	}
}

func TestWeightStringRoundTrip(t *testing.T) {
	for w := Weight(0); w <= MaxWeight; w++ {
		back, err := ParseWeight(w.String())
		if err != nil || back != w {
			t.Fatalf("%d prints as %q which parses as %v, %v", w, w.String(), back, err)
		}
	}
	for w, s := range map[Weight]string{0: "0%", 1: "0.01%", 10: "0.1%", 25: "0.25%", 500: "5%", 10000: "100%"} {
		if w.String() != s {
			t.Errorf("%d prints as %q, want %q", w, w.String(), s)
		}
	}
}

func TestParseNames(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		pars func(string) (string, error)
	}{
		{"tcp", true, func(s string) (string, error) { p, err := ParseProtocol(s); return p.String(), err }},
		{"udp", true, func(s string) (string, error) { p, err := ParseProtocol(s); return p.String(), err }},
		{"sctp", false, func(s string) (string, error) { p, err := ParseProtocol(s); return p.String(), err }},
		{"flow", true, func(s string) (string, error) { k, err := ParseKeyKind(s); return k.String(), err }},
		{"client", true, func(s string) (string, error) { k, err := ParseKeyKind(s); return k.String(), err }},
		{"gtpu-inner", true, func(s string) (string, error) { k, err := ParseKeyKind(s); return k.String(), err }},
		{"gtpu", false, func(s string) (string, error) { k, err := ParseKeyKind(s); return k.String(), err }},
		{"stable", true, func(s string) (string, error) { p, err := ParsePool(s); return p.String(), err }},
		{"canary", true, func(s string) (string, error) { p, err := ParsePool(s); return p.String(), err }},
		{"blue", false, func(s string) (string, error) { p, err := ParsePool(s); return p.String(), err }},
	} {
		got, err := c.pars(c.in)
		if c.ok && (err != nil || got != c.in) {
			t.Errorf("%q: %q, %v", c.in, got, err)
		}
		if !c.ok && err == nil {
			t.Errorf("%q: accepted", c.in)
		}
	}
}

func valid() Service {
	return Service{
		Name: "auth", VIP: netip.MustParseAddr("10.0.0.10"), Port: 80, Protocol: TCP, Key: KeyFlow,
		Stable:       []Backend{{Addr: netip.MustParseAddrPort("10.1.0.11:8080")}, {Addr: netip.MustParseAddrPort("10.1.0.12:8080")}},
		Canary:       []Backend{{Addr: netip.MustParseAddrPort("10.2.0.11:8080")}},
		CanaryWeight: 500,
		Pins:         []Pin{{Prefix: netip.MustParsePrefix("10.9.0.0/16"), Pool: Canary}},
	}
}

// paths returns the Path of every FieldError in err.
func paths(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		var fe *FieldError
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if errors.As(e, &fe) {
			out = append(out, fe.Path)
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

func TestValidate(t *testing.T) {
	if s := valid(); s.Validate() != nil {
		err := s.Validate()
		t.Fatalf("a valid service: %v", err)
	}
	cases := map[string]struct {
		mutate func(*Service)
		path   string
	}{
		"bad name":             {func(s *Service) { s.Name = "Auth_1" }, "metadata.name"},
		"bad tenant":           {func(s *Service) { s.Tenant = "A B" }, "metadata.tenant"},
		"no VIP":               {func(s *Service) { s.VIP = netip.Addr{} }, "spec.vip"},
		"multicast VIP":        {func(s *Service) { s.VIP = netip.MustParseAddr("224.0.0.1") }, "spec.vip"},
		"no port":              {func(s *Service) { s.Port = 0 }, "spec.port"},
		"no protocol":          {func(s *Service) { s.Protocol = 0 }, "spec.protocol"},
		"bad protocol":         {func(s *Service) { s.Protocol = 132 }, "spec.protocol"},
		"gtpu-inner on tcp":    {func(s *Service) { s.Key = KeyGTPUInner }, "spec.key"},
		"bad key":              {func(s *Service) { s.Key = 9 }, "spec.key"},
		"bad app":              {func(s *Service) { s.App = "grpc" }, "spec.app"},
		"tiny timeout":         {func(s *Service) { s.Timeout = 1 }, "spec.timeout"},
		"weight over 100%":     {func(s *Service) { s.CanaryWeight = 10001 }, "spec.canary.weight"},
		"weight, no canary":    {func(s *Service) { s.Canary = nil; s.Pins = nil }, "spec.canary.weight"},
		"no stable, traffic":   {func(s *Service) { s.Stable = nil }, "spec.stable.backends"},
		"backend no port":      {func(s *Service) { s.Stable[0].Addr = netip.AddrPortFrom(s.Stable[0].Addr.Addr(), 0) }, "spec.stable.backends[0]"},
		"backend loopback":     {func(s *Service) { s.Stable[1].Addr = netip.MustParseAddrPort("127.0.0.1:80") }, "spec.stable.backends[1]"},
		"backend other family": {func(s *Service) { s.Canary[0].Addr = netip.MustParseAddrPort("[2001:db8::1]:80") }, "spec.canary.backends[0]"},
		"backend twice":        {func(s *Service) { s.Stable[1] = s.Stable[0] }, "spec.stable.backends[1]"},
		"backend in both":      {func(s *Service) { s.Canary[0] = s.Stable[0] }, "spec.canary.backends[0]"},
		"too many backends": {func(s *Service) {
			for i := range 300 {
				s.Stable = append(s.Stable, Backend{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 3, byte(i / 250), byte(1 + i%250)}), 80)})
			}
		}, "spec.stable.backends"},
		"pin host bits":   {func(s *Service) { s.Pins[0].Prefix = netip.MustParsePrefix("10.9.0.1/16") }, "spec.pins[0].prefix"},
		"pin no prefix":   {func(s *Service) { s.Pins[0].Prefix = netip.Prefix{} }, "spec.pins[0].prefix"},
		"pin bad pool":    {func(s *Service) { s.Pins[0].Pool = 7 }, "spec.pins[0].pool"},
		"pin empty pool":  {func(s *Service) { s.Canary, s.CanaryWeight = nil, 0 }, "spec.pins[0].pool"},
		"pin twice":       {func(s *Service) { s.Pins = append(s.Pins, s.Pins[0]) }, "spec.pins[1].prefix"},
		"mirror over":     {func(s *Service) { s.Mirror = &Mirror{Percent: 10001, To: "eth0"} }, "spec.mirror.percent"},
		"mirror no to":    {func(s *Service) { s.Mirror = &Mirror{Percent: 100} }, "spec.mirror.to"},
		"mirror bad name": {func(s *Service) { s.Mirror = &Mirror{Percent: 100, To: "a/b"} }, "spec.mirror.to"},
	}
	for name, c := range cases {
		s := valid()
		c.mutate(&s)
		err := s.Validate()
		found := false
		for _, p := range paths(err) {
			found = found || p == c.path
		}
		if !found {
			t.Errorf("%s: error %v does not name %s", name, err, c.path)
		}
	}
}

func TestValidateSet(t *testing.T) {
	a, b := valid(), valid()
	b.Name = "other"
	b.Port = 81
	b.Stable = []Backend{{Addr: netip.MustParseAddrPort("10.1.0.21:8080")}}
	b.Canary = []Backend{{Addr: netip.MustParseAddrPort("10.2.0.21:8080")}}
	if err := ValidateSet([]Service{a, b}); err != nil {
		t.Fatalf("a valid set: %v", err)
	}
	dupName := b
	dupName.Name = "auth"
	dupFrontend := b
	dupFrontend.Port = 80
	sharedBackend := b
	sharedBackend.Stable = []Backend{a.Stable[0]}
	for name, c := range map[string]struct {
		set  []Service
		path string
	}{
		"duplicate name":          {[]Service{a, dupName}, "metadata.name"},
		"duplicate frontend":      {[]Service{a, dupFrontend}, "spec.vip"},
		"backend in two services": {[]Service{a, sharedBackend}, "spec.stable.backends[0]"},
	} {
		err := ValidateSet(c.set)
		found := false
		for _, p := range paths(err) {
			found = found || p == c.path
		}
		if !found {
			t.Errorf("%s: error %v does not name %s", name, err, c.path)
		}
	}
	// The same backend address on another port, or for another protocol, is
	// another endpoint.
	otherPort := b
	otherPort.Stable = []Backend{{Addr: netip.AddrPortFrom(a.Stable[0].Addr.Addr(), 9090)}}
	if err := ValidateSet([]Service{a, otherPort}); err != nil {
		t.Errorf("same backend address, other port: %v", err)
	}
}
