package linkdelay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// The rules. nftables' own `queue` expression needs CONFIG_NFT_QUEUE,
// which lab kernels may lack (the nft binary then answers "No such file or
// directory"); the xtables NFQUEUE target, which nf_tables runs through
// nft_compat (CONFIG_NFT_COMPAT), does the same and is there wherever
// iptables' NFQUEUE is. The nft binary cannot write a compat target, so
// the rules are built here over netlink, in a table of our own: an output
// chain with, per link, "destination in prefix: NFQUEUE to our queue".

// families are the table families a set of links needs, in a fixed order.
func families(links []Link) []nftables.TableFamily {
	var v4, v6 bool
	for _, l := range links {
		v4 = v4 || l.Dst.Addr().Is4()
		v6 = v6 || l.Dst.Addr().Is6()
	}
	var out []nftables.TableFamily
	if v4 {
		out = append(out, nftables.TableFamilyIPv4)
	}
	if v6 {
		out = append(out, nftables.TableFamilyIPv6)
	}
	return out
}

// installTables replaces the tables called name (both families) with ones
// that queue what links cover to queue num. It runs in the calling
// thread's namespace.
func installTables(name string, num uint16, links []Link) error {
	if err := removeTables(name); err != nil {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("linkdelay: nftables: %w", err)
	}
	for _, fam := range families(links) {
		t := c.AddTable(&nftables.Table{Family: fam, Name: name})
		ch := c.AddChain(&nftables.Chain{
			Name: "output", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter,
		})
		for _, l := range links {
			if (fam == nftables.TableFamilyIPv4) == l.Dst.Addr().Is4() {
				c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: queueRule(l.Dst, num)})
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("linkdelay: install table %s: %w", name, err)
	}
	return nil
}

// queueRule is "destination within dst: NFQUEUE num, bypass": bypass lets
// packets through undelayed when no reader is bound (a leftover table).
func queueRule(dst netip.Prefix, num uint16) []expr.Any {
	dst = dst.Masked()
	addr := dst.Addr().AsSlice()
	off := uint32(16) // IPv4 header: destination
	if dst.Addr().Is6() {
		off = 24
	}
	mask := make([]byte, len(addr))
	for i := range dst.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	// struct xt_NFQ_info_v3 (native byte order): queuenum, queues_total,
	// flags (NFQ_FLAG_BYPASS), padded to 8 bytes like the kernel's
	// XT_ALIGN.
	info := make(xt.Unknown, 8)
	binary.NativeEndian.PutUint16(info[0:], num)
	binary.NativeEndian.PutUint16(info[2:], 1)
	binary.NativeEndian.PutUint16(info[4:], 1)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(len(addr))},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(addr)), Mask: mask, Xor: make([]byte, len(addr))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
		&expr.Counter{},
		&expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info},
	}
}

// removeTables deletes the tables called name, of both families, if they
// exist. It runs in the calling thread's namespace.
func removeTables(name string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("linkdelay: nftables: %w", err)
	}
	var errs []error
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		c.DelTable(&nftables.Table{Family: fam, Name: name})
		if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("linkdelay: remove table %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
