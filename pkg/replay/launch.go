package replay

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The netdev generic netlink family (include/uapi/linux/netdev.h).
const (
	netdevCmdDevGet       = 1
	netdevAttrIfindex     = 1
	netdevAttrXSKFeatures = 6
	xskLaunchTimeFIFO     = 1 << 2 // NETDEV_XSK_FLAGS_TX_LAUNCH_TIME_FIFO
)

// launchTimeKernel is the first Linux with AF_XDP TX launch time.
var launchTimeKernel = [2]int{6, 15}

// LaunchTimeSupport says whether AF_XDP TX launch time could be used on
// the interface, and why not: it needs Linux 6.15+ and a driver that
// reports NETDEV_XSK_FLAGS_TX_LAUNCH_TIME_FIFO (igc, stmmac; not veth).
func LaunchTimeSupport(ifindex int, ifname string) (bool, string) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		release := unix.ByteSliceToString(uts.Release[:])
		if kernelBefore(release, launchTimeKernel) {
			return false, fmt.Sprintf("not supported: Linux %s, launch time needs 6.15+", release)
		}
	}
	features, err := xskFeatures(ifindex)
	if err != nil {
		return false, fmt.Sprintf("not supported: cannot read %s's AF_XDP features: %v", ifname, err)
	}
	if features&xskLaunchTimeFIFO == 0 {
		return false, fmt.Sprintf("not supported by %s's driver (AF_XDP TX features %#x)", ifname, features)
	}
	return true, "supported by " + ifname
}

// kernelBefore reports whether a release string such as 6.1.0-18-amd64
// is older than want.
func kernelBefore(release string, want [2]int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return major < want[0] || major == want[0] && minor < want[1]
}

// genlHeader is a generic netlink header with its reserved bytes zero
// (nl.Genlmsg serializes whatever follows its two fields in memory, which
// a strictly validated family refuses).
type genlHeader [2]byte

func (h genlHeader) Len() int          { return 4 }
func (h genlHeader) Serialize() []byte { return []byte{h[0], h[1], 0, 0} }

// xskFeatures asks the netdev family for an interface's AF_XDP features
// (`ynl --family netdev --do dev-get`).
func xskFeatures(ifindex int) (uint64, error) {
	fam, err := netlink.GenlFamilyGet("netdev")
	if err != nil {
		return 0, fmt.Errorf("netdev netlink family: %w", err)
	}
	req := nl.NewNetlinkRequest(int(fam.ID), 0)
	req.AddData(genlHeader{netdevCmdDevGet, 1})
	idx := make([]byte, 4)
	binary.NativeEndian.PutUint32(idx, uint32(ifindex))
	req.AddData(nl.NewRtAttr(netdevAttrIfindex, idx))
	msgs, err := req.Execute(unix.NETLINK_GENERIC, 0)
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		if len(m) < nl.SizeofGenlmsg {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[nl.SizeofGenlmsg:])
		if err != nil {
			return 0, err
		}
		for _, a := range attrs {
			if a.Attr.Type == netdevAttrXSKFeatures && len(a.Value) >= 8 {
				return binary.NativeEndian.Uint64(a.Value), nil
			}
		}
	}
	return 0, nil // an older kernel leaves the attribute out: no features
}
