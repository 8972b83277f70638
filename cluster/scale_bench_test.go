package cluster

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// BenchmarkFleetCommit simulates a fleet with raft's in-memory transport
// (no kernels, no TLS, one process): 5 voters and 100, 300 or 1 000
// non-voters. Each write is committed on the leader (followed by a
// barrier, as Node.applyLocal does) and timed until every member's state
// machine applied it. It reports p50/p99/max in ms, the process's CPU per
// write and, idle, per second (every member's work, not only the leader's:
// an upper bound of the leader's). Figures in docs/scaling.md.
//
//	go test -run XXX -bench FleetCommit -benchtime 100x ./cluster
func BenchmarkFleetCommit(b *testing.B) {
	for _, nonVoters := range []int{100, 300, 1000} {
		b.Run(fmt.Sprintf("nonvoters=%d", nonVoters), func(b *testing.B) {
			f := newSimFleet(b, 5, nonVoters)
			idle := cpuTime()
			time.Sleep(2 * time.Second)
			idle = (cpuTime() - idle) / 2 // per second
			took := make([]time.Duration, 0, b.N)
			start := cpuTime()
			b.ResetTimer()
			for range b.N {
				took = append(took, f.write(b))
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-start).Microseconds())/1000/float64(b.N), "cpu-ms/write")
			reportQuantiles(b, took)
			b.ReportMetric(float64(idle.Microseconds())/1000, "idle-cpu-ms/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// reportQuantiles reports p50, p99 and max of took (nearest rank) in ms.
func reportQuantiles(b *testing.B, took []time.Duration) {
	slices.Sort(took)
	for _, q := range []struct {
		unit string
		at   float64
	}{{"p50-ms", 0.5}, {"p99-ms", 0.99}, {"max-ms", 1}} {
		k := min(len(took)-1, max(0, int(math.Ceil(q.at*float64(len(took))))-1))
		b.ReportMetric(float64(took[k].Microseconds())/1000, q.unit)
	}
}

// cpuTime is the CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// simFleet is a raft cluster in memory whose state machines count, per
// log index, how many members applied it.
type simFleet struct {
	rafts  []*raft.Raft
	mu     sync.Mutex
	cond   *sync.Cond
	counts map[uint64]int
}

// simFSM is a member's state machine: it reports each applied index.
type simFSM struct{ f *simFleet }

func (s simFSM) Apply(l *raft.Log) any {
	s.f.mu.Lock()
	s.f.counts[l.Index]++
	s.f.mu.Unlock()
	s.f.cond.Broadcast()
	return nil
}

func (simFSM) Snapshot() (raft.FSMSnapshot, error) { return simSnapshot{}, nil }
func (simFSM) Restore(r io.ReadCloser) error       { return r.Close() }

type simSnapshot struct{}

func (simSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (simSnapshot) Release()                             {}

func newSimFleet(b *testing.B, voters, nonVoters int) *simFleet {
	f := &simFleet{counts: map[uint64]int{}}
	f.cond = sync.NewCond(&f.mu)
	n := voters + nonVoters
	addrs := make([]raft.ServerAddress, n)
	trans := make([]*raft.InmemTransport, n)
	var conf raft.Configuration
	for i := range n {
		addrs[i], trans[i] = raft.NewInmemTransport("")
		s := raft.Server{ID: raft.ServerID(fmt.Sprintf("m%d", i)), Address: addrs[i], Suffrage: raft.Voter}
		if i >= voters {
			s.Suffrage = raft.Nonvoter
		}
		conf.Servers = append(conf.Servers, s)
	}
	for i := range voters { // only voters send: appends, votes
		for j := range n {
			if i != j {
				trans[i].Connect(addrs[j], trans[j])
				trans[j].Connect(addrs[i], trans[i])
			}
		}
	}
	for i := range n {
		rc := raft.DefaultConfig()
		rc.LocalID = conf.Servers[i].ID
		rc.Logger = hclog.NewNullLogger()
		store := raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(rc, store, store, snaps, trans[i], conf); err != nil {
			b.Fatal(err)
		}
		r, err := raft.NewRaft(rc, simFSM{f}, store, store, snaps, trans[i])
		if err != nil {
			b.Fatal(err)
		}
		f.rafts = append(f.rafts, r)
	}
	b.Cleanup(func() {
		for _, r := range f.rafts {
			r.Shutdown()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for f.leader() == nil {
		if time.Now().After(deadline) {
			b.Fatal("no leader within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.write(b) // every member applied the first entry: all are running
	return f
}

func (f *simFleet) leader() *raft.Raft {
	for _, r := range f.rafts[:5] {
		if r.State() == raft.Leader {
			return r
		}
	}
	return nil
}

// write commits an entry and returns how long until every member applied
// it.
func (f *simFleet) write(b *testing.B) time.Duration {
	l := f.leader()
	if l == nil {
		b.Fatal("the fleet lost its leader")
	}
	start := time.Now()
	fut := l.Apply([]byte("w"), 10*time.Second)
	if err := fut.Error(); err != nil {
		b.Fatal(err)
	}
	go l.Barrier(5 * time.Second)
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.counts[fut.Index()] < len(f.rafts) {
		f.cond.Wait()
	}
	delete(f.counts, fut.Index())
	return time.Since(start)
}
