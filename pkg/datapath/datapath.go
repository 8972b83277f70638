// Package datapath loads Graylane's steering programs into the kernel,
// attaches them to interfaces, and keeps their maps equal to a desired set
// of services (Apply).
//
// Consistency rules the package keeps, so a packet never sees a half state:
//   - a service's weight, key and live lookup tables are one value in the
//     services map, replaced by a single update;
//   - a pool's lookup table is double-buffered: the idle buffer is written
//     first, then the service value is flipped to it;
//   - Apply validates and plans everything before the first map write, and
//     undoes its own writes if the kernel refuses one half-way.
package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// Defaults for Options.
const (
	DefaultFlowTable   = 262144
	DefaultMaxServices = 1024
	DefaultMaxPins     = 65536
	// DefaultCaptureRing holds about 100 ms of 100 000 headers-only
	// records a second, or 2 000 whole 1500-byte packets.
	DefaultCaptureRing = 8 << 20
)

// PendingTableFor is the size in records of the table of pending flows
// (the pending map: TCP handshakes and first UDP exchanges not confirmed
// yet) next to a flow table of flowTable entries: a quarter of it, at
// least 1024. A legitimate handshake survives a flood of spoofed SYNs if
// fewer than PENDING_WAYS of them land in its bucket before it completes
// (on average flood rate x round trip x PENDING_WAYS / this size; see
// bpf/include/pending.h).
func PendingTableFor(flowTable uint32) uint32 {
	return max(1024, flowTable/4)
}

// Options configure a Datapath.
type Options struct {
	// PinPath is a directory on a bpffs where maps and links are pinned,
	// to outlive the process (Release) and be adopted by the next New.
	// Empty: nothing is pinned (tests and benchmarks).
	PinPath string
	// FlowTable is the number of flow entries.
	FlowTable uint32
	// MaxServices bounds the number of services.
	MaxServices uint32
	// MaxPins bounds the number of pins over all services.
	MaxPins uint32
	// NoTracking turns per-flow request tracking off (latency histograms,
	// error signals): for comparisons of its cost.
	NoTracking bool
	// DisableTCX makes tc mode use a clsact qdisc even where the kernel
	// has TCX (a test hook for the fallback).
	DisableTCX bool
	// ChecksumHelpers makes the tc programs leave every L4 checksum to
	// the kernel's helpers, as they do where they cannot read an skb's
	// checksum state (a test hook for that case, and for comparisons).
	ChecksumHelpers bool
	// CaptureRing is the size in bytes of the capture ring (a power of
	// two, at least a page; default DefaultCaptureRing).
	CaptureRing uint32
	// Logger receives what the data path does; nil discards.
	Logger *slog.Logger

	// program, when set, is loaded instead of the programs this binary
	// carries: another build of steer.c with the same map layouts, which
	// the benchmarks compare with this one in one run (BenchmarkBuilds).
	program *ebpf.CollectionSpec
	// flows, when set, is the flow table to use instead of a new one (no
	// pin path): BenchmarkBuilds gives both builds one table, so that they
	// insert into the same memory.
	flows *ebpf.Map
}

func (o *Options) setDefaults() {
	if o.FlowTable == 0 {
		o.FlowTable = DefaultFlowTable
	}
	if o.MaxServices == 0 {
		o.MaxServices = DefaultMaxServices
	}
	if o.CaptureRing == 0 {
		o.CaptureRing = DefaultCaptureRing
	}
	if o.MaxPins == 0 {
		o.MaxPins = DefaultMaxPins
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Datapath is the loaded steering programs and their maps.
type Datapath struct {
	opts      Options
	log       *slog.Logger
	objs      bpf.SteerObjects
	statNames []string
	errNames  []string
	cpus      int // possible CPUs: the length of a per-CPU value
	// sweeper runs the timeout sweep (SweepTimeouts), under its own lock.
	sweeper timeoutSweeper

	mu       sync.Mutex
	attached map[string]*attachment // by interface name
	services map[string]*installed  // by service name
	ids      idAllocator
	pins     int    // pins installed over all services
	filter   filter // the frontend filter as the kernel has it
	// rewriteFrontends: the frontends map may not hold the installed
	// services' frontends (it is new beside adopted services); the next
	// Apply writes every one.
	rewriteFrontends bool
	routeGen         uint32
	// adoption is what New found pinned, until the first Apply completes
	// taking it over (nil without a pin path).
	adoption *adoption
	// captures are the captures running here, by service name (SetCapture).
	captures map[string]captureState
	// mirrorOut: tc_mirror_out on each mirror interface in use, by name.
	mirrorOut map[string]*mirrorOutLink
	// adopted are the services found in adopted maps, by frontend, until
	// the first Apply matches them to the desired ones.
	adopted map[bpf.SteerEndpoint]*installed
	// pinLoc is where the pins really are (LocatePins): opts.PinPath is
	// its Path.
	pinLoc PinLocation
	closed bool
	// l7Tables: the pools' tables ChooseL7 read, by generation.
	l7Tables l7TableCache
}

// New loads the programs and creates their maps, or, under a pin path
// where an earlier data path left its pins, adopts them (see adopt.go):
// the earlier programs keep steering until the first Apply. It does not
// attach anything: see Attach.
func New(opts Options) (*Datapath, error) {
	opts.setDefaults()
	spec, statNames, errNames, err := specFor(opts)
	if err != nil {
		return nil, err
	}
	var specs bpf.SteerSpecs
	if err := spec.Assign(&specs); err != nil {
		return nil, fmt.Errorf("assign program spec: %w", err)
	}
	kernelTypes := btf.NewCache()
	if err := setChecksumState(&specs, opts, kernelTypes, opts.Logger); err != nil {
		return nil, err
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count CPUs: %w", err)
	}

	d := &Datapath{
		opts:      opts,
		log:       opts.Logger,
		statNames: statNames,
		errNames:  errNames,
		cpus:      cpus,
		attached:  make(map[string]*attachment),
		captures:  make(map[string]captureState),
		mirrorOut: make(map[string]*mirrorOutLink),
		services:  make(map[string]*installed),
		ids:       newIDAllocator(opts.MaxServices),
	}
	d.sweeper = newTimeoutSweeper(&d.objs, opts.FlowTable)
	collOpts := ebpf.CollectionOptions{Cache: kernelTypes}
	if err := d.openPinned(spec, &collOpts); err != nil {
		return nil, err
	}
	if err := d.load(spec, &collOpts); err != nil {
		d.adoption.close()
		return nil, err
	}
	if err := d.start(); err != nil {
		d.adoption.close()
		d.objs.Close()
		return nil, err
	}
	return d, nil
}

// openPinned prepares the pin path and opens what an earlier data path
// pinned there (openPins): the maps the programs adopt go into collOpts.
// Without a pin path, the flow table of Options.flows does.
func (d *Datapath) openPinned(spec *ebpf.CollectionSpec, collOpts *ebpf.CollectionOptions) error {
	opts := d.opts
	if opts.PinPath == "" {
		if opts.flows != nil {
			collOpts.MapReplacements = map[string]*ebpf.Map{bpf.SteerMapFlows: opts.flows}
		}
		return nil
	}
	loc, err := LocatePins(opts.PinPath, opts.Logger)
	if err != nil {
		return err
	}
	d.pinLoc, d.opts.PinPath, opts.PinPath = loc, loc.Path, loc.Path
	for _, dir := range []string{"maps", "links"} {
		if err := os.MkdirAll(filepath.Join(opts.PinPath, dir), 0o700); err != nil {
			return fmt.Errorf("create pin directory: %w", err)
		}
	}
	d.adoption, collOpts.MapReplacements, err = openPins(opts.PinPath, spec)
	return err
}

// load loads the programs and their maps into the kernel.
func (d *Datapath) load(spec *ebpf.CollectionSpec, collOpts *ebpf.CollectionOptions) error {
	if err := spec.LoadAndAssign(&d.objs, collOpts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("the kernel's verifier rejected the steering programs (kernel too old?): %w", err)
		}
		return fmt.Errorf("load steering programs: %w", err)
	}
	return nil
}

// start readies the loaded programs: an adoption begins (the services and
// frontend filter the earlier programs left are read back), and the
// programs get a next-hop generation of their own.
func (d *Datapath) start() error {
	if d.adoption != nil {
		if err := d.adoption.begin(d); err != nil {
			return err
		}
	}
	// A new filter map is empty: only an adopted one needs reading.
	d.filter = newFilter()
	if d.adoption.adopts(bpf.SteerMapFrontendFilter) {
		var err error
		if d.filter, err = readFilter(d.objs.FrontendFilter); err != nil {
			return err
		}
	}
	// A new program instance starts with its own next-hop generation: one
	// that no slot cached by an earlier instance carries, since routes may
	// have changed while no agent watched them.
	d.routeGen = uint32(time.Now().UnixNano()) | 1
	if err := d.SetFlowClock(time.Now()); err != nil {
		return fmt.Errorf("set the flow clock: %w", err)
	}
	if err := d.objs.RouteGen.Set(d.routeGen); err != nil {
		return fmt.Errorf("set the route generation: %w", err)
	}
	return nil
}

// specFor loads the programs' spec sized and set as opts say.
func specFor(opts Options) (spec *ebpf.CollectionSpec, statNames, errNames []string, err error) {
	spec, statNames, errNames, err = loadSpec()
	if err != nil {
		return nil, nil, nil, err
	}
	if opts.program != nil {
		spec = opts.program.Copy()
	}
	var specs bpf.SteerSpecs
	if err := spec.Assign(&specs); err != nil {
		return nil, nil, nil, fmt.Errorf("assign program spec: %w", err)
	}
	if opts.NoTracking {
		if err := specs.Tracking.Set(uint8(0)); err != nil {
			return nil, nil, nil, fmt.Errorf("turn tracking off: %w", err)
		}
	}
	specs.Services.MaxEntries = opts.MaxServices
	specs.Tables.MaxEntries = opts.MaxServices * 4 // two pools, two buffers each
	specs.Pins.MaxEntries = opts.MaxPins
	specs.Flows.MaxEntries = opts.FlowTable
	specs.Pending.MaxEntries = pendingBucketsFor(opts.FlowTable)
	if err := specs.PendingBuckets.Set(specs.Pending.MaxEntries); err != nil {
		return nil, nil, nil, fmt.Errorf("size the pending table: %w", err)
	}
	wheelCap := wheelCapFor(opts.FlowTable)
	if err := specs.WheelCap.Set(wheelCap); err != nil {
		return nil, nil, nil, fmt.Errorf("size the deadline wheel: %w", err)
	}
	specs.Wheel.MaxEntries = uint32(bpf.SteerWheelLimitsWHEEL_SLOTS) * wheelCap
	// The next-hop cache's clock is jiffies; one lasts a tick of the coarse
	// clocks (1 / HZ).
	var tick unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_MONOTONIC_COARSE, &tick); err != nil {
		return nil, nil, nil, fmt.Errorf("read the kernel's tick: %w", err)
	}
	if tick.Nano() <= 0 {
		return nil, nil, nil, fmt.Errorf("the kernel's tick reads %d ns", tick.Nano())
	}
	if err := specs.JiffyNs.Set(uint64(tick.Nano())); err != nil {
		return nil, nil, nil, fmt.Errorf("set the kernel's tick: %w", err)
	}
	specs.Backends.MaxEntries = opts.MaxServices * 2 * service.MaxBackendsPerPool
	specs.PoolCounters.MaxEntries = opts.MaxServices * 2
	specs.Params.MaxEntries = opts.MaxServices
	specs.Frontends.MaxEntries = opts.MaxServices
	specs.Latency.MaxEntries = opts.MaxServices * 2
	specs.Mirrors.MaxEntries = opts.MaxServices
	specs.MirrorCounters.MaxEntries = opts.MaxServices * 2
	specs.CaptureRing.MaxEntries = opts.CaptureRing
	return spec, statNames, errNames, nil
}

// Release closes the data path's file descriptors and leaves everything
// pinned: the programs keep steering, the maps keep their flows, counters
// and services, until a next New adopts them (or Cleanup removes them).
// Without a pin path there is nothing to keep: Release is Close.
func (d *Datapath) Release() error { return d.shutdown(d.opts.PinPath != "") }

// Close detaches every program, and removes the maps and their pins.
func (d *Datapath) Close() error { return d.shutdown(false) }

// shutdown closes the data path; keep leaves what is pinned in place.
func (d *Datapath) shutdown(keep bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	var ifnames []string
	for name, a := range d.attached {
		var err error
		switch {
		case !keep:
			err = errors.Join(d.detachCompanion(a), a.detach())
		case a.link != nil:
			err = a.link.Close() // the pin keeps it attached
			if c := a.companion; c != nil && c.link != nil {
				err = errors.Join(err, c.link.Close())
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("interface %s: %w", name, err))
		}
		ifnames = append(ifnames, name)
	}
	d.attached = nil
	errs = append(errs, d.detachMirrorOut()...)
	d.sweeper.close()
	errs = append(errs, d.closeObjects()...)
	if !keep && d.opts.PinPath != "" {
		if err := Cleanup(d.opts.PinPath, ifnames, slog.New(slog.DiscardHandler)); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, d.pinLoc.Close())
	return errors.Join(errs...)
}

func (d *Datapath) closeObjects() []error {
	var errs []error
	d.adoption.close()
	if err := d.objs.Close(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// mapsByName lists every map of the programs by its name in them, read
// off the generated struct so that a new map cannot be left out (of
// pinning, say).
func (d *Datapath) mapsByName() map[string]*ebpf.Map {
	out := make(map[string]*ebpf.Map)
	v := reflect.ValueOf(&d.objs.SteerMaps).Elem()
	for i := range v.NumField() {
		if m, ok := v.Field(i).Interface().(*ebpf.Map); ok && m != nil {
			out[v.Type().Field(i).Tag.Get("ebpf")] = m
		}
	}
	return out
}

// Objects gives tests and benchmarks the loaded programs and maps.
func (d *Datapath) Objects() *bpf.SteerObjects { return &d.objs }

// PinLocation is where the data path pins (see LocatePins).
func (d *Datapath) PinLocation() PinLocation {
	loc := d.pinLoc
	loc.dir = nil // the data path's to close
	return loc
}

// preparePinPath makes sure path is a directory on a bpffs and removes
// what a previous agent left in it. Where no bpffs is mounted it mounts
// one: at /sys/fs/bpf for paths below it (the standard place, which other
// tools look at too), else at path itself. What a previous agent pinned
// there stays: New adopts it.
func preparePinPath(path string, log *slog.Logger) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("bpffs path %q must be absolute", path)
	}
	const standard = "/sys/fs/bpf"
	if strings.HasPrefix(path+"/", standard+"/") {
		if ok, err := isBPFFS(standard); err == nil && !ok {
			if err := unix.Mount("bpf", standard, "bpf", 0, "mode=0700"); err != nil {
				return fmt.Errorf("mount bpffs on %s: %w", standard, err)
			}
			log.Info("mounted bpffs", "path", standard)
		}
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("create bpffs path %s: %w", path, err)
	}
	onBPFFS, err := isBPFFS(path)
	if err != nil {
		return err
	}
	if !onBPFFS {
		if err := unix.Mount("bpf", path, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs on %s: %w", path, err)
		}
		log.Info("mounted bpffs", "path", path)
	}
	return nil
}

func isBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return uint32(st.Type) == unix.BPF_FS_MAGIC, nil
}

// loadSpec loads the programs' spec and the names of their path counters
// and error kinds (from BTF).
func loadSpec() (spec *ebpf.CollectionSpec, statNames, errNames []string, err error) {
	spec, err = bpf.LoadProgram()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load program spec: %w", err)
	}
	if statNames, err = enumNames(spec.Types, "stat", int(bpf.SteerStatSTAT_COUNT)); err != nil {
		return nil, nil, nil, err
	}
	if errNames, err = enumNames(spec.Types, "err_kind", kernelErrorKinds); err != nil {
		return nil, nil, nil, err
	}
	return spec, statNames, append(errNames, grpcErrorName), nil
}

// enumNames reads the names of a C enum's values from the programs' BTF,
// lower-cased and without their common prefix, so Go never keeps a second
// list of them.
func enumNames(types *btf.Spec, name string, count int) ([]string, error) {
	var e *btf.Enum
	if err := types.TypeByName(name, &e); err != nil {
		return nil, fmt.Errorf("find enum %s in program BTF: %w", name, err)
	}
	names := make([]string, count)
	for _, v := range e.Values {
		if v.Value < uint64(count) {
			names[v.Value] = enumValueName(v.Name)
		}
	}
	for i, n := range names {
		if n == "" {
			return nil, fmt.Errorf("enum %s has no name for value %d", name, i)
		}
	}
	return names, nil
}

// enumValueName turns STAT_PASS_NOT_IP into pass_not_ip.
func enumValueName(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '_' {
			s = s[i+1:]
			break
		}
	}
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// idAllocator hands out service ids, lowest free first.
type idAllocator struct {
	free []bool // free[i]: id i is unused
}

func newIDAllocator(n uint32) idAllocator {
	free := make([]bool, n)
	for i := range free {
		free[i] = true
	}
	return idAllocator{free: free}
}

func (a *idAllocator) take() (uint32, bool) {
	for i, f := range a.free {
		if f {
			a.free[i] = false
			return uint32(i), true
		}
	}
	return 0, false
}

func (a *idAllocator) release(id uint32) { a.free[id] = true }

// RoutesChanged makes the programs look up every next hop in the FIB again
// instead of using their cache. Call it on every route, neighbour or link
// change (WatchRoutes does).
func (d *Datapath) RoutesChanged() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.routeGen++
	return d.objs.RouteGen.Set(d.routeGen)
}
