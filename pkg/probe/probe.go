// Package probe checks the kernel for every feature the agent uses, and
// says which are missing, what falls back, and what the kernel must be at
// least. The agent runs it at start (a missing must-have is a clear error
// instead of a verifier dump) and as `graylane-agent check`.
package probe

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
)

// MinKernel is the oldest kernel with every must-have feature (and on
// which the programs pass the verifier): bpf_for_each_map_elem is 5.13;
// the project is tested on 5.15 and later.
const MinKernel = "5.15"

// Feature is one thing the agent needs of the kernel.
type Feature struct {
	// Key names it in GRAYLANE_DISABLE_FEATURES ("tcx").
	Key       string
	Name      string
	NeededFor string
	// Since is the first kernel that has it.
	Since string
	// Fallback is what the agent does without it ("" for a must-have).
	Fallback string
	probe    func() error
}

// MustHave reports whether the agent cannot run without f.
func (f Feature) MustHave() bool { return f.Fallback == "" }

// Result is a feature as found on this kernel.
type Result struct {
	Feature
	Present bool
	// Disabled says the feature was turned off on purpose (a test hook).
	Disabled bool
	// Err says why it is missing.
	Err error
}

// Features are what the agent uses, in the order they are reported.
var Features = []Feature{
	{Key: "btf", Name: "kernel BTF", NeededFor: "reading the kernel's types (the programs carry their own; the next feature needs it)", Since: "5.4",
		Fallback: "as for the next", probe: func() error { _, err := os.Stat("/sys/kernel/btf/vmlinux"); return err }},
	{Key: "skb_csum_state", Name: "kfunc bpf_cast_to_kern_ctx", NeededFor: "the tc programs reading an skb's checksum state, to fix L4 checksums themselves",
		Since: "6.2", Fallback: "the kernel's helpers fix L4 checksums (about 100 ns more a packet)", probe: haveKfunc("bpf_cast_to_kern_ctx")},
	{Key: "xdp", Name: "program type XDP", NeededFor: "steering in the driver (native/generic XDP)", Since: "4.8", probe: programType(ebpf.XDP)},
	{Key: "sched_cls", Name: "program type sched_cls", NeededFor: "steering at the tc hook", Since: "4.1", probe: programType(ebpf.SchedCLS)},
	{Key: "for_each_map_elem", Name: "helper bpf_for_each_map_elem", NeededFor: "the timeout sweep over the flow table", Since: "5.13", probe: helper(ebpf.XDP, asm.FnForEachMapElem)},
	{Key: "lru_hash", Name: "map type LRU hash", NeededFor: "the flow table", Since: "4.10", probe: mapType(ebpf.LRUHash)},
	{Key: "lpm_trie", Name: "map type LPM trie", NeededFor: "pins", Since: "4.11", probe: mapType(ebpf.LPMTrie)},
	{Key: "percpu_array", Name: "map type per-CPU array", NeededFor: "counters, the next-hop cache", Since: "4.6", probe: mapType(ebpf.PerCPUArray)},
	{Key: "fib_lookup", Name: "helper bpf_fib_lookup", NeededFor: "the next hop of forwarded packets", Since: "4.18", probe: helper(ebpf.XDP, asm.FnFibLookup)},
	{Key: "jiffies64", Name: "helper bpf_jiffies64", NeededFor: "the next-hop cache's expiry", Since: "5.5", probe: helper(ebpf.XDP, asm.FnJiffies64)},
	{Key: "spin_lock", Name: "helper bpf_spin_lock", NeededFor: "the rate caps of releases (token buckets)", Since: "5.1", probe: helper(ebpf.XDP, asm.FnSpinLock)},
	{Key: "bounded_loops", Name: "bounded loops", NeededFor: "the programs' header walks", Since: "5.3", probe: features.HaveBoundedLoops},
	{Key: "tcx", Name: "TCX", NeededFor: "attaching at tc without a qdisc; the stitch of L7 connections (first in the chain)", Since: "6.6",
		Fallback: "a clsact qdisc with a direct-action filter, and copying for L7 connections", probe: haveTCX},
	{Key: "bpf_loop", Name: "helper bpf_loop", NeededFor: "the stitch's walk of TCP options (L7 connections)", Since: "5.17",
		Fallback: "copying for L7 connections", probe: helper(ebpf.SchedCLS, asm.FnLoop)},
}

// haveKfunc looks the kfunc up in the kernel's BTF (kfuncs exist only
// there).
func haveKfunc(name string) func() error {
	return func() error {
		kernel, err := btf.LoadKernelSpec()
		if err != nil {
			return fmt.Errorf("kernel BTF: %w", err)
		}
		var fn *btf.Func
		return kernel.TypeByName(name, &fn)
	}
}

func programType(t ebpf.ProgramType) func() error {
	return func() error { return features.HaveProgramType(t) }
}

func mapType(t ebpf.MapType) func() error {
	return func() error { return features.HaveMapType(t) }
}

func helper(t ebpf.ProgramType, fn asm.BuiltinFunc) func() error {
	return func() error { return features.HaveProgramHelper(t, fn) }
}

// haveTCX attaches a program that passes everything to the loopback
// interface's tc ingress through TCX and detaches it at once.
func haveTCX() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}}) // TCX_NEXT
	if err != nil {
		return fmt.Errorf("load a test program: %w", err)
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Program: prog, Interface: 1, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return err
	}
	return l.Close()
}

// Check probes every feature; those named in disabled are reported off
// without probing (a test hook: GRAYLANE_DISABLE_FEATURES).
func Check(disabled map[string]bool) []Result {
	out := make([]Result, 0, len(Features))
	for _, f := range Features {
		r := Result{Feature: f}
		switch {
		case disabled[f.Key]:
			r.Disabled = true
		default:
			r.Err = f.probe()
			r.Present = r.Err == nil
		}
		out = append(out, r)
	}
	return out
}

// Disabled reads a comma-separated list of feature keys.
func Disabled(list string) map[string]bool {
	out := map[string]bool{}
	for _, k := range strings.Split(list, ",") {
		if k = strings.TrimSpace(k); k != "" {
			out[k] = true
		}
	}
	return out
}

// Missing returns an error naming the missing must-haves, or nil.
func Missing(results []Result) error {
	var errs []error
	for _, r := range results {
		if !r.Present && r.MustHave() {
			why := "disabled"
			if r.Err != nil {
				why = r.Err.Error()
			}
			errs = append(errs, fmt.Errorf("%s (needed for %s; since Linux %s): %s", r.Name, r.NeededFor, r.Since, why))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("this kernel lacks what the agent needs (Linux %s or later has all of it): %w", MinKernel, errors.Join(errs...))
}

// Has reports whether the feature with key is present.
func Has(results []Result, key string) bool {
	for _, r := range results {
		if r.Key == key {
			return r.Present
		}
	}
	return false
}
