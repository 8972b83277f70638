package datapath

import (
	"math/bits"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// passProgram builds the baseline of the per-packet benchmarks for hook h:
// a bare program that returns the pass verdict. It is closed with b.
func passProgram(b *testing.B, h hook) *ebpf.Program { return bareProgram(b, h) }

// clockFloorProgram builds a bare program for hook h that reads the clock
// (bpf_ktime_get_ns) once and returns the pass verdict. It is closed with b.
func clockFloorProgram(b *testing.B, h hook) *ebpf.Program {
	return bareProgram(b, h, asm.FnKtimeGetNs.Call())
}

// bareProgram builds a program for hook h that runs ins and returns the
// pass verdict. It is closed with b.
func bareProgram(b *testing.B, h hook, ins ...asm.Instruction) *ebpf.Program {
	progType, passRet := ebpf.XDP, int32(xdpPass)
	if h == hookTC {
		progType, passRet = ebpf.SchedCLS, -1
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         progType,
		License:      "GPL",
		Instructions: append(ins, asm.Mov.Imm(asm.R0, passRet), asm.Return()),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// floorKeyOff is where the floor programs' 40-byte key starts in a frame:
// right after the Ethernet header (the IPv4 and TCP headers, which hold
// the tuple).
const floorKeyOff = 14

// floorProgram builds a bare program for hook h that takes the 40 bytes at
// floorKeyOff as a key and looks it up in m, or, with insert, inserts it
// (a new flow's table work). The key and value sizes are the flow table's.
func floorProgram(b *testing.B, f *fixture, h hook, m *ebpf.Map, insert bool) *ebpf.Program {
	progType, passRet, ins := floorPrologue(f, h)
	ins = append(ins, asm.Mov.Imm(asm.R6, 0))
	for i := int16(0); i < 5; i++ { // key at fp-40, a zero value at fp-80
		ins = append(ins,
			asm.LoadMem(asm.R5, asm.R2, floorKeyOff+8*i, asm.DWord),
			asm.StoreMem(asm.RFP, -40+8*i, asm.R5, asm.DWord),
			asm.StoreMem(asm.RFP, -80+8*i, asm.R6, asm.DWord))
	}
	ins = append(ins, asm.LoadMapPtr(asm.R1, m.FD()), asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, -40))
	if insert {
		ins = append(ins, asm.Mov.Reg(asm.R3, asm.RFP), asm.Add.Imm(asm.R3, -80), asm.Mov.Imm(asm.R4, 0), asm.FnMapUpdateElem.Call())
	} else {
		ins = append(ins, asm.FnMapLookupElem.Call())
	}
	ins = append(ins, asm.Mov.Imm(asm.R0, passRet).WithSymbol("out"), asm.Return())
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: progType, License: "GPL", Instructions: ins})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// floorPrologue starts a floor program for hook h: its type and pass
// verdict, and instructions that leave the frame's start in R2 and jump to
// "out" when the frame is shorter than floorKeyOff + 40 bytes.
func floorPrologue(f *fixture, h hook) (ebpf.ProgramType, int32, asm.Instructions) {
	progType, dataOff, endOff, passRet := ebpf.XDP, int16(0), int16(4), int32(xdpPass)
	if h == hookTC {
		progType, passRet = ebpf.SchedCLS, -1
		dataOff, endOff = f.skbDataOffs[0], f.skbDataOffs[1]
	}
	return progType, passRet, asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, dataOff, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, endOff, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, floorKeyOff+40),
		asm.JGT.Reg(asm.R4, asm.R3, "out"),
	}
}

// memoryFloorProgram builds a bare program for hook h that writes the 40
// bytes at floorKeyOff twice (as a key and a value) into the element of m
// (an array of 80-byte values whose size is a power of two) that a
// multiplicative hash of the frame's source address and ports picks.
func memoryFloorProgram(b *testing.B, f *fixture, h hook, m *ebpf.Map) *ebpf.Program {
	n := m.MaxEntries()
	if n&(n-1) != 0 || m.ValueSize() != 80 {
		b.Fatalf("memory floor: %d entries of %d bytes, want a power of two of 80", n, m.ValueSize())
	}
	bits := int32(bits.Len32(n) - 1)
	progType, passRet, ins := floorPrologue(f, h)
	ins = append(ins,
		asm.Mov.Reg(asm.R7, asm.R2),
		// slot = ((src address ^ ports) * 2^32/phi) >> (32 - bits)
		asm.LoadMem(asm.R5, asm.R2, floorKeyOff+12, asm.Word),
		asm.LoadMem(asm.R6, asm.R2, floorKeyOff+20, asm.Word),
		asm.Xor.Reg32(asm.R5, asm.R6),
		asm.Mul.Imm32(asm.R5, -0x61C88647), // 0x9E3779B9
		asm.RSh.Imm32(asm.R5, 32-bits),
		asm.StoreMem(asm.RFP, -4, asm.R5, asm.Word),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
	)
	for i := int16(0); i < 5; i++ {
		ins = append(ins,
			asm.LoadMem(asm.R5, asm.R7, floorKeyOff+8*i, asm.DWord),
			asm.StoreMem(asm.R0, 8*i, asm.R5, asm.DWord),
			asm.StoreMem(asm.R0, 40+8*i, asm.R5, asm.DWord))
	}
	ins = append(ins, asm.Mov.Imm(asm.R0, passRet).WithSymbol("out"), asm.Return())
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: progType, License: "GPL", Instructions: ins})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// benchFloors are the floor programs of one hook's per-packet runs.
type benchFloors struct {
	lookup, insert, memory, clock *ebpf.Program
}

// newBenchFloors builds the floors of hook h on maps shaped and sized like
// a flow table of n entries; with full, their LRU map is filled to its
// size. The established frame's key is in it, for the lookup floor to
// find. Maps and programs are closed with b.
func newBenchFloors(b *testing.B, f *fixture, h hook, n uint32, full bool, established []byte) benchFloors {
	var fl benchFloors
	// The floors: bare programs doing only the flow table's share of a
	// path, on a map shaped and sized like the flow table. What a path
	// costs above its floor is what Graylane adds to the table operation
	// any sticky balancer pays.
	floorTable := benchMap(b, &ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 40, ValueSize: 40, MaxEntries: n})
	fl.lookup = closedWith(b, floorProgram(b, f, h, floorTable, false))
	fl.insert = closedWith(b, floorProgram(b, f, h, floorTable, true))
	// The memory floor: one write of a key and a value at a random slot of
	// an array as large as the flow table, which is the least any flow
	// table stores for a new flow. The slot is a line the recent runs did not
	// touch, so this is the cost of a cache (and TLB) miss on this machine.
	memoryTable := benchMap(b, &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 80, MaxEntries: n})
	fl.memory = closedWith(b, memoryFloorProgram(b, f, h, memoryTable))
	// The clock floor: one read of the clock a tracked new flow starts its
	// connect (or request) timer with, the helper bpf_ktime_get_ns.
	fl.clock = clockFloorProgram(b, h)
	if full {
		fillFlowTable(b, floorTable, 0, 0)
	}
	if err := floorTable.Put(established[floorKeyOff:floorKeyOff+40], make([]byte, 40)); err != nil {
		b.Fatal(err)
	}
	return fl
}

// benchMap creates a map as spec says, closed with b.
func benchMap(b *testing.B, spec *ebpf.MapSpec) *ebpf.Map {
	m, err := ebpf.NewMap(spec)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// closedWith returns p, closed with b.
func closedWith(b *testing.B, p *ebpf.Program) *ebpf.Program {
	b.Cleanup(func() { p.Close() })
	return p
}
