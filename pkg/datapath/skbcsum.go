package datapath

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/graylane/graylane/bpf"
)

// ipSummed is where the kernel's struct sk_buff keeps ip_summed, its
// checksum state: the byte, and the shift of the field's two bits in it.
type ipSummed struct {
	off   uint32
	shift uint8
}

// findIPSummed reads the kernel's BTF for what the tc programs need to
// read an skb's checksum state themselves (tc_rewrite): the kfunc
// bpf_cast_to_kern_ctx (Linux 6.2) and the place of sk_buff.ip_summed.
// ok is false, with the reason, when the kernel lacks either; the programs
// then leave every L4 checksum to the kernel's helpers.
func findIPSummed(kernel *btf.Spec) (loc ipSummed, ok bool, reason string) {
	if kernel == nil {
		return loc, false, "the kernel has no BTF"
	}
	var fn *btf.Func
	if err := kernel.TypeByName("bpf_cast_to_kern_ctx", &fn); err != nil {
		return loc, false, "the kernel has no bpf_cast_to_kern_ctx (Linux 6.2)"
	}
	var skb *btf.Struct
	if err := kernel.TypeByName("sk_buff", &skb); err != nil {
		return loc, false, fmt.Sprintf("struct sk_buff: %v", err)
	}
	bits, size, found := memberBits(skb.Members, "ip_summed", 0)
	if !found {
		return loc, false, "struct sk_buff has no ip_summed"
	}
	// Two bits within one byte: the programs read one byte.
	if size != 2 || bits%8+2 > 8 {
		return loc, false, fmt.Sprintf("sk_buff.ip_summed is %d bits at bit %d, not two bits of one byte", size, bits)
	}
	return ipSummed{off: uint32(bits / 8), shift: uint8(bits % 8)}, true, ""
}

// memberBits finds the named member among members, descending into
// anonymous structs and unions (struct_group), and returns its offset in
// bits from base and its bitfield size (0 for a whole field).
func memberBits(members []btf.Member, name string, base btf.Bits) (off btf.Bits, size btf.Bits, found bool) {
	for _, m := range members {
		if m.Name == name {
			return base + m.Offset, m.BitfieldSize, true
		}
		if m.Name != "" {
			continue
		}
		var inner []btf.Member
		switch t := btf.UnderlyingType(m.Type).(type) {
		case *btf.Struct:
			inner = t.Members
		case *btf.Union:
			inner = t.Members
		}
		if off, size, found := memberBits(inner, name, base+m.Offset); found {
			return off, size, true
		}
	}
	return 0, 0, false
}

// kernelBTF is the running kernel's BTF from cache (read once per cache),
// or nil when it has none.
func kernelBTF(cache *btf.Cache) (*btf.Spec, error) {
	spec, err := cache.Kernel()
	if errors.Is(err, btf.ErrNotFound) || errors.Is(err, ebpf.ErrNotSupported) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the kernel's BTF: %w", err)
	}
	return spec, nil
}

// setChecksumState tells the tc programs in specs where to read an skb's
// checksum state, when the kernel lets them and opts do not say otherwise.
// The kernel's BTF comes from cache, which the load then reuses to resolve
// the kfunc (a read of the kernel's BTF costs tens of ms).
func setChecksumState(specs *bpf.SteerSpecs, opts Options, cache *btf.Cache, log *slog.Logger) error {
	reason := "asked to (Options.ChecksumHelpers)"
	var loc ipSummed
	ok := false
	if !opts.ChecksumHelpers {
		kernel, err := kernelBTF(cache)
		if err != nil {
			return err
		}
		loc, ok, reason = findIPSummed(kernel)
	}
	if !ok {
		log.Info("tc programs leave L4 checksums to the kernel's helpers", "why", reason)
		return nil
	}
	if err := specs.SkbCsumKnown.Set(uint8(1)); err != nil {
		return fmt.Errorf("set skb_csum_known: %w", err)
	}
	if err := specs.IpSummedOff.Set(loc.off); err != nil {
		return fmt.Errorf("set ip_summed_off: %w", err)
	}
	if err := specs.IpSummedShift.Set(loc.shift); err != nil {
		return fmt.Errorf("set ip_summed_shift: %w", err)
	}
	return nil
}
