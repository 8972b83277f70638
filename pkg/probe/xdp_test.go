package probe

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/graylane/graylane/internal/testenv"
)

// TestInterfaceXDP: in a namespace of its own, a veth (whose driver runs
// native XDP) and the loopback (whose driver does not) are told apart,
// and nothing is attached to either.
func TestInterfaceXDP(t *testing.T) {
	testenv.RequirePrivileges(t)
	runtime.LockOSThread() // the namespace is this thread's until the end
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		netns.Set(orig)
		ns.Close()
		runtime.UnlockOSThread()
	}()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "xq0"}, PeerName: "xq1"}); err != nil {
		t.Fatal(err)
	}
	for range 3 { // asked again, the same answer
		for name, want := range map[string]bool{"xq0": true, "lo": false} {
			l, err := netlink.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			x, err := InterfaceXDP(l.Attrs().Index)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !x.Known {
				t.Skip("this kernel does not report XDP features (before 6.3)")
			}
			if x.Native != want {
				t.Errorf("%s (%s): native XDP %v, want %v (%+v)", name, l.Type(), x.Native, want, x)
			}
			if l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached {
				t.Errorf("%s: asking attached a program", name)
			}
		}
	}
	if _, err := InterfaceXDP(9999); err == nil {
		t.Error("no error for an interface that does not exist")
	}
}

// FuzzParseAttrs: any bytes in place of the kernel's answer are read
// without a panic, and every value read lies within them.
func FuzzParseAttrs(f *testing.F) {
	f.Add(nlAttr(netdevAttrXDPFeatures, make([]byte, 8)))
	f.Add([]byte{5, 0, 1, 0, 9})
	f.Add([]byte{0xff, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		for typ, v := range parseAttrs(b) {
			if len(v) > len(b) || typ > 0x3fff {
				t.Fatalf("attribute %d of %d bytes from %d bytes", typ, len(v), len(b))
			}
		}
	})
}
