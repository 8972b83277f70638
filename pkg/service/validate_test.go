package service

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// valid returns a valid IPv4 service; each call a fresh copy.
func valid() Service {
	return Service{
		Name: "auth", VIP: netip.MustParseAddr("10.0.0.10"), Port: 80, Protocol: TCP, Key: KeyFlow,
		Stable:       []Backend{{Addr: netip.MustParseAddrPort("10.1.0.11:8080")}, {Addr: netip.MustParseAddrPort("10.1.0.12:8080")}},
		Canary:       []Backend{{Addr: netip.MustParseAddrPort("10.2.0.11:8080")}},
		CanaryWeight: 500,
		Pins:         []Pin{{Prefix: netip.MustParsePrefix("10.9.0.0/16"), Pool: Canary}},
	}
}

// valid6 returns a valid IPv6 service.
func valid6() Service {
	return Service{
		Name: "auth6", VIP: netip.MustParseAddr("2001:db8::10"), Port: 443, Protocol: TCP, Key: KeyClient,
		Stable:       []Backend{{Addr: netip.MustParseAddrPort("[2001:db8:1::11]:8443")}},
		Canary:       []Backend{{Addr: netip.MustParseAddrPort("[2001:db8:2::11]:8443")}},
		CanaryWeight: 2500,
		Pins:         []Pin{{Prefix: netip.MustParsePrefix("2001:db8:9::/48"), Pool: Stable}},
	}
}

// fieldErrors returns the leaves of err, which must all be *FieldError.
func fieldErrors(t *testing.T, err error) []*FieldError {
	t.Helper()
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v (%T) is not a *FieldError", e, e)
		}
		out = append(out, fe)
	}
	if err != nil {
		walk(err)
	}
	return out
}

// paths returns the Path of every error, in order.
func paths(fes []*FieldError) []string {
	var out []string
	for _, fe := range fes {
		out = append(out, fe.Path)
	}
	return out
}

func addrs(n int, a, b byte, port uint16) []Backend {
	out := make([]Backend, n)
	for i := range out {
		out[i].Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{a, b, byte(i / 250), byte(1 + i%250)}), port)
	}
	return out
}

func TestValidateValid(t *testing.T) {
	for name, mutate := range map[string]func(*Service){
		"as is":               func(*Service) {},
		"IPv6":                func(s *Service) { *s = valid6() },
		"IPv4-mapped VIP":     func(s *Service) { s.VIP = netip.MustParseAddr("::ffff:10.0.0.10") },
		"IPv4-mapped backend": func(s *Service) { s.Stable[0].Addr = netip.MustParseAddrPort("[::ffff:10.1.0.13]:8080") },
		"longest name":        func(s *Service) { s.Name = strings.Repeat("a", 63) },
		"tenant":              func(s *Service) { s.Tenant = "team-1" },
		"gtpu-inner over udp": func(s *Service) { s.Key, s.Protocol, s.Port = KeyGTPUInner, UDP, 2152 },
		"app none":            func(s *Service) { s.App = AppNone },
		"app http":            func(s *Service) { s.App = AppHTTP },
		"app grpc":            func(s *Service) { s.App = AppGRPC },
		"shortest timeout":    func(s *Service) { s.Timeout = time.Millisecond },
		"most thresholds": func(s *Service) {
			s.LatencyThresholds = []time.Duration{time.Microsecond, time.Millisecond, time.Second, time.Minute}
		},
		"no canary":                  func(s *Service) { s.Canary, s.CanaryWeight, s.Pins = nil, 0, nil },
		"all to canary, no stable":   func(s *Service) { s.Stable, s.CanaryWeight = nil, MaxWeight },
		"full pools":                 func(s *Service) { s.Stable = addrs(MaxBackendsPerPool, 10, 3, 80) },
		"same address, another port": func(s *Service) { s.Canary[0].Addr = netip.AddrPortFrom(s.Stable[0].Addr.Addr(), 9090) },
		"pin to stable":              func(s *Service) { s.Pins[0].Pool = Stable },
		"mirror to capture":          func(s *Service) { s.Mirror = &Mirror{Percent: MaxWeight, To: "capture"} },
		"mirror to a long name":      func(s *Service) { s.Mirror = &Mirror{Percent: 1, To: strings.Repeat("e", 15)} },
		"mirror shortest snaplen":    func(s *Service) { s.Mirror = &Mirror{Percent: 1, To: "capture", Snaplen: MinSnaplen} },
		"mirror longest snaplen":     func(s *Service) { s.Mirror = &Mirror{Percent: 1, To: "mirror0", Snaplen: MaxSnaplen} },
	} {
		s := valid()
		mutate(&s)
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestValidate has a case for every problem Validate reports, each changing
// a valid service in one way: the errors must name exactly these paths.
func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name   string
		base   func() Service // valid when nil
		mutate func(*Service)
		paths  []string
	}{
		// metadata
		{name: "bad name", mutate: func(s *Service) { s.Name = "Auth_1" }, paths: []string{"metadata.name"}},
		{name: "no name", mutate: func(s *Service) { s.Name = "" }, paths: []string{"metadata.name"}},
		{name: "long name", mutate: func(s *Service) { s.Name = strings.Repeat("a", 64) }, paths: []string{"metadata.name"}},
		{name: "bad tenant", mutate: func(s *Service) { s.Tenant = "A B" }, paths: []string{"metadata.tenant"}},

		// spec.vip
		{name: "no VIP", mutate: func(s *Service) { s.VIP = netip.Addr{} }, paths: []string{"spec.vip"}},
		{name: "VIP with a zone", base: valid6, mutate: func(s *Service) { s.VIP = s.VIP.WithZone("eth0") }, paths: []string{"spec.vip"}},
		{name: "unspecified VIP", mutate: func(s *Service) { s.VIP = netip.IPv4Unspecified() }, paths: []string{"spec.vip"}},
		{name: "unspecified IPv6 VIP", base: valid6, mutate: func(s *Service) { s.VIP = netip.IPv6Unspecified() }, paths: []string{"spec.vip"}},
		{name: "multicast VIP", mutate: func(s *Service) { s.VIP = netip.MustParseAddr("224.0.0.1") }, paths: []string{"spec.vip"}},

		// spec.port, spec.protocol, spec.key, spec.app, spec.timeout
		{name: "no port", mutate: func(s *Service) { s.Port = 0 }, paths: []string{"spec.port"}},
		{name: "no protocol", mutate: func(s *Service) { s.Protocol = 0 }, paths: []string{"spec.protocol"}},
		{name: "unsupported protocol", mutate: func(s *Service) { s.Protocol = 132 }, paths: []string{"spec.protocol"}},
		{name: "gtpu-inner over tcp", mutate: func(s *Service) { s.Key = KeyGTPUInner }, paths: []string{"spec.key"}},
		{name: "unsupported key", mutate: func(s *Service) { s.Key = 9 }, paths: []string{"spec.key"}},
		{name: "unsupported app", mutate: func(s *Service) { s.App = "http2" }, paths: []string{"spec.app"}},
		{name: "negative timeout", mutate: func(s *Service) { s.Timeout = -time.Second }, paths: []string{"spec.timeout"}},
		{name: "timeout under 1ms", mutate: func(s *Service) { s.Timeout = time.Millisecond - 1 }, paths: []string{"spec.timeout"}},

		// spec.latencyThresholds
		{name: "too many thresholds", mutate: func(s *Service) {
			s.LatencyThresholds = []time.Duration{1 * time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond, 5 * time.Millisecond}
		}, paths: []string{"spec.latencyThresholds"}},
		{name: "threshold under 1µs", mutate: func(s *Service) {
			s.LatencyThresholds = []time.Duration{time.Millisecond, time.Microsecond - 1}
		}, paths: []string{"spec.latencyThresholds[1]"}},
		{name: "threshold twice", mutate: func(s *Service) {
			s.LatencyThresholds = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 10 * time.Millisecond}
		}, paths: []string{"spec.latencyThresholds[2]"}},

		// spec.canary.weight
		{name: "weight above 100%", mutate: func(s *Service) { s.CanaryWeight = MaxWeight + 1 }, paths: []string{"spec.canary.weight"}},
		{name: "weight without canary backends", mutate: func(s *Service) { s.Canary, s.Pins = nil, nil }, paths: []string{"spec.canary.weight"}},

		// spec.{stable,canary}.backends
		{name: "no stable backends for the rest", mutate: func(s *Service) { s.Stable = nil }, paths: []string{"spec.stable.backends"}},
		{name: "too many backends", mutate: func(s *Service) { s.Canary = addrs(MaxBackendsPerPool+1, 10, 3, 80) }, paths: []string{"spec.canary.backends"}},
		{name: "backend not an address", mutate: func(s *Service) { s.Stable[0].Addr = netip.AddrPort{} }, paths: []string{"spec.stable.backends[0]"}},
		{name: "backend with a zone", base: valid6, mutate: func(s *Service) {
			s.Stable[0].Addr = netip.MustParseAddrPort("[fe80::1%eth1]:8443")
		}, paths: []string{"spec.stable.backends[0]"}},
		{name: "unspecified backend", mutate: func(s *Service) { s.Stable[1].Addr = netip.MustParseAddrPort("0.0.0.0:8080") }, paths: []string{"spec.stable.backends[1]"}},
		{name: "multicast backend", mutate: func(s *Service) { s.Canary[0].Addr = netip.MustParseAddrPort("239.1.1.1:8080") }, paths: []string{"spec.canary.backends[0]"}},
		{name: "loopback backend", mutate: func(s *Service) { s.Stable[1].Addr = netip.MustParseAddrPort("127.0.0.1:8080") }, paths: []string{"spec.stable.backends[1]"}},
		{name: "backend without a port", mutate: func(s *Service) { s.Stable[0].Addr = netip.AddrPortFrom(s.Stable[0].Addr.Addr(), 0) }, paths: []string{"spec.stable.backends[0]"}},
		{name: "backend of another family", mutate: func(s *Service) {
			s.Canary[0].Addr = netip.MustParseAddrPort("[2001:db8::1]:8080")
		}, paths: []string{"spec.canary.backends[0]"}},
		{name: "backend twice in a pool", mutate: func(s *Service) { s.Stable[1] = s.Stable[0] }, paths: []string{"spec.stable.backends[1]"}},
		{name: "backend twice in a pool, IPv4-mapped", mutate: func(s *Service) {
			s.Stable[1].Addr = netip.MustParseAddrPort("[::ffff:10.1.0.11]:8080")
		}, paths: []string{"spec.stable.backends[1]"}},
		{name: "backend in both pools", mutate: func(s *Service) { s.Canary[0] = s.Stable[1] }, paths: []string{"spec.canary.backends[0]"}},
		{name: "backend in both pools, IPv4-mapped", mutate: func(s *Service) {
			s.Canary[0].Addr = netip.MustParseAddrPort("[::ffff:10.1.0.12]:8080")
		}, paths: []string{"spec.canary.backends[0]"}},

		// spec.pins
		{name: "too many pins", mutate: func(s *Service) {
			s.Pins = nil
			for i := range MaxPins + 1 {
				s.Pins = append(s.Pins, Pin{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/256), byte(i), 0}), 24), Pool: Canary})
			}
		}, paths: []string{"spec.pins"}},
		{name: "pin not a prefix", mutate: func(s *Service) { s.Pins[0].Prefix = netip.Prefix{} }, paths: []string{"spec.pins[0].prefix"}},
		{name: "pin with host bits", mutate: func(s *Service) { s.Pins[0].Prefix = netip.MustParsePrefix("10.9.0.1/16") }, paths: []string{"spec.pins[0].prefix"}},
		{name: "pin to no pool", mutate: func(s *Service) { s.Pins[0].Pool = 7 }, paths: []string{"spec.pins[0].pool"}},
		{name: "pin to an empty pool", mutate: func(s *Service) { s.Canary, s.CanaryWeight = nil, 0 }, paths: []string{"spec.pins[0].pool"}},
		{name: "pin twice", mutate: func(s *Service) {
			s.Pins = append(s.Pins, Pin{Prefix: s.Pins[0].Prefix, Pool: Stable})
		}, paths: []string{"spec.pins[1].prefix"}},
		{name: "pin twice, IPv4-mapped", mutate: func(s *Service) {
			s.Pins = append(s.Pins, Pin{Prefix: netip.MustParsePrefix("::ffff:10.9.0.0/112"), Pool: Stable})
		}, paths: []string{"spec.pins[1].prefix"}},
		{name: "pin twice, once with host bits", mutate: func(s *Service) {
			s.Pins = append(s.Pins, Pin{Prefix: netip.MustParsePrefix("10.9.1.0/16"), Pool: Canary})
		}, paths: []string{"spec.pins[1].prefix", "spec.pins[1].prefix"}},

		// spec.mirror
		{name: "mirror above 100%", mutate: func(s *Service) { s.Mirror = &Mirror{Percent: MaxWeight + 1, To: "eth0"} }, paths: []string{"spec.mirror.percent"}},
		{name: "mirror to nothing", mutate: func(s *Service) { s.Mirror = &Mirror{Percent: 100} }, paths: []string{"spec.mirror.to"}},
		{name: "mirror to a path", mutate: func(s *Service) { s.Mirror = &Mirror{Percent: 100, To: "a/b"} }, paths: []string{"spec.mirror.to"}},
		{name: "mirror to a name with a space", mutate: func(s *Service) { s.Mirror = &Mirror{Percent: 100, To: "eth 0"} }, paths: []string{"spec.mirror.to"}},
		{name: "mirror to a name too long", mutate: func(s *Service) { s.Mirror = &Mirror{Percent: 100, To: strings.Repeat("e", 16)} }, paths: []string{"spec.mirror.to"}},
		{name: "mirror snaplen too short", mutate: func(s *Service) { s.Mirror = &Mirror{Percent: 100, To: "capture", Snaplen: MinSnaplen - 1} }, paths: []string{"spec.mirror.snaplen"}},
		{name: "mirror snaplen of one byte", mutate: func(s *Service) { s.Mirror = &Mirror{Percent: 100, To: "capture", Snaplen: 1} }, paths: []string{"spec.mirror.snaplen"}},
		{name: "mirror snaplen too long", mutate: func(s *Service) { s.Mirror = &Mirror{Percent: 100, To: "capture", Snaplen: MaxSnaplen + 1} }, paths: []string{"spec.mirror.snaplen"}},

		// Every problem is reported, in order.
		{name: "several", mutate: func(s *Service) {
			s.Name, s.Port, s.Mirror = "", 0, &Mirror{Percent: 100}
			s.Stable[1] = s.Stable[0]
		}, paths: []string{"metadata.name", "spec.port", "spec.stable.backends[1]", "spec.mirror.to"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := c.base
			if base == nil {
				base = valid
			}
			s := base()
			if err := s.Validate(); err != nil {
				t.Fatalf("the base is not valid: %v", err)
			}
			c.mutate(&s)
			fes := fieldErrors(t, s.Validate())
			if got := paths(fes); !reflect.DeepEqual(got, c.paths) {
				t.Errorf("paths %q, want %q; errors:\n%v", got, c.paths, s.Validate())
			}
			for _, fe := range fes {
				if fe.Service != s.Name || fe.Msg == "" {
					t.Errorf("%#v: want service %q and a message", fe, s.Name)
				}
			}
		})
	}
}

func TestFieldErrorMessage(t *testing.T) {
	for _, c := range []struct {
		fe   FieldError
		want string
	}{
		{FieldError{Service: "auth", Path: "spec.port", Msg: "is required: 1..65535"}, `service "auth": spec.port: is required: 1..65535`},
		{FieldError{Path: "metadata.name", Msg: `"" must be 1 to 63 characters of a-z, 0-9 and -`}, `metadata.name: "" must be 1 to 63 characters of a-z, 0-9 and -`},
	} {
		if got := c.fe.Error(); got != c.want {
			t.Errorf("%q, want %q", got, c.want)
		}
	}
}

func TestValidateSet(t *testing.T) {
	a := valid()
	// other is valid together with a: another name, port and backends.
	other := func(mutate func(*Service)) Service {
		s := valid()
		s.Name, s.Port = "other", 81
		s.Stable = []Backend{{Addr: netip.MustParseAddrPort("10.1.0.21:8080")}}
		s.Canary = []Backend{{Addr: netip.MustParseAddrPort("10.2.0.21:8080")}}
		if mutate != nil {
			mutate(&s)
		}
		return s
	}
	type want struct{ service, path, msg string }
	for _, c := range []struct {
		name string
		set  []Service
		want []want
	}{
		{name: "empty"},
		{name: "valid", set: []Service{a, other(nil), valid6()}},
		{name: "duplicate name", set: []Service{a, other(func(s *Service) { s.Name = "auth" })},
			want: []want{{"auth", "metadata.name", "is used by two services (documents 1 and 2)"}}},
		{name: "duplicate name, three times", set: []Service{a, other(func(s *Service) { s.Name = "auth" }), other(func(s *Service) {
			s.Name, s.Port = "auth", 82
			s.Stable = []Backend{{Addr: netip.MustParseAddrPort("10.1.0.31:8080")}}
			s.Canary = []Backend{{Addr: netip.MustParseAddrPort("10.2.0.31:8080")}}
		})}, want: []want{
			{"auth", "metadata.name", "(documents 1 and 2)"},
			{"auth", "metadata.name", "(documents 2 and 3)"},
		}},
		// Two services without a name are each invalid, not a duplicate.
		{name: "no names", set: []Service{other(func(s *Service) { s.Name = "" }), func() Service { s := a; s.Name = ""; return s }()},
			want: []want{{"", "metadata.name", "must be 1 to 63"}, {"", "metadata.name", "must be 1 to 63"}}},
		{name: "duplicate frontend", set: []Service{a, other(func(s *Service) { s.Port = 80 })},
			want: []want{{"other", "spec.vip", `10.0.0.10:80/tcp is already the frontend of service "auth"`}}},
		{name: "duplicate frontend, IPv4-mapped", set: []Service{a, other(func(s *Service) { s.Port, s.VIP = 80, netip.MustParseAddr("::ffff:10.0.0.10") })},
			want: []want{{"other", "spec.vip", `10.0.0.10:80/tcp is already the frontend of service "auth"`}}},
		{name: "same address and port, other protocol", set: []Service{a, other(func(s *Service) { s.Port, s.Protocol = 80, UDP })}},
		{name: "backend shared by two services", set: []Service{a, other(func(s *Service) { s.Stable[0] = a.Stable[1] })},
			want: []want{{"other", "spec.stable.backends[0]", `10.1.0.12:8080/tcp is also a backend of service "auth"`}}},
		{name: "backend shared, stable of one and canary of the other", set: []Service{a, other(func(s *Service) { s.Canary[0] = a.Stable[0] })},
			want: []want{{"other", "spec.canary.backends[0]", `10.1.0.11:8080/tcp is also a backend of service "auth"`}}},
		{name: "backend shared, IPv4-mapped", set: []Service{a, other(func(s *Service) {
			s.Stable[0].Addr = netip.MustParseAddrPort("[::ffff:10.2.0.11]:8080")
		})}, want: []want{{"other", "spec.stable.backends[0]", `10.2.0.11:8080/tcp is also a backend of service "auth"`}}},
		{name: "backend address shared on another port", set: []Service{a, other(func(s *Service) {
			s.Stable[0].Addr = netip.AddrPortFrom(a.Stable[0].Addr.Addr(), 9090)
		})}},
		{name: "backend endpoint shared for another protocol", set: []Service{a, other(func(s *Service) {
			s.Protocol, s.Stable[0] = UDP, a.Stable[0]
		})}},
		// Validate reports it, once; the set adds nothing.
		{name: "same backend in stable and canary of one service", set: []Service{other(nil), func() Service { s := a; s.Canary = []Backend{a.Stable[0]}; return s }()},
			want: []want{{"auth", "spec.canary.backends[0]", "is also stable backend 0"}}},
		{name: "problems of each service", set: []Service{func() Service { s := a; s.Port = 0; return s }(), other(func(s *Service) { s.App = "thrift" })},
			want: []want{{"auth", "spec.port", "is required"}, {"other", "spec.app", "is not supported"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateSet(c.set)
			fes := fieldErrors(t, err)
			if len(fes) != len(c.want) {
				t.Fatalf("%d errors, want %d:\n%v", len(fes), len(c.want), err)
			}
			for i, w := range c.want {
				fe := fes[i]
				if fe.Service != w.service || fe.Path != w.path || !strings.Contains(fe.Msg, w.msg) {
					t.Errorf("error %d: %q %s %q; want %q %s and a message with %q", i, fe.Service, fe.Path, fe.Msg, w.service, w.path, w.msg)
				}
			}
		})
	}
}

// TestMirrorValidate: a mirror checked on its own reports the paths and
// words it does inside a service, without the service's name;
// FieldMessages renames the paths.
func TestMirrorValidate(t *testing.T) {
	if err := (&Mirror{Percent: 100, To: "capture", Snaplen: MinSnaplen}).Validate(); err != nil {
		t.Fatalf("valid mirror: %v", err)
	}
	err := (&Mirror{Percent: MaxWeight + 1, Snaplen: 1}).Validate()
	want := "spec.mirror.percent: 100.01% is above 100%\nspec.mirror.to: is required: an interface name or \"capture\"\n" +
		"spec.mirror.snaplen: 1 is outside 64..65535 bytes (leave it out, or 0, to keep whole packets)"
	if err == nil || err.Error() != want {
		t.Fatalf("error\n%v\nwant\n%s", err, want)
	}
	if got, want := FieldMessages(err, "spec.mirror.", "--"), "--percent: 100.01% is above 100%; --to: is required: an interface name or \"capture\"; "+
		"--snaplen: 1 is outside 64..65535 bytes (leave it out, or 0, to keep whole packets)"; got != want {
		t.Errorf("FieldMessages:\n%s\nwant\n%s", got, want)
	}
}
