package captures

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/service"
)

// fakeDatapath records what the hub asks of the kernel.
type fakeDatapath struct{ set map[string]datapath.Capture }

func (f *fakeDatapath) SetCapture(name string, c datapath.Capture) error {
	f.set[name] = c
	return nil
}
func (f *fakeDatapath) ServiceID(string) (uint32, bool) { return 1, true }
func (f *fakeDatapath) MirrorStats(string) ([2]datapath.MirrorStats, error) {
	return [2]datapath.MirrorStats{}, nil
}
func (f *fakeDatapath) CaptureRing() *ebpf.Map { return nil }

// TestHubSharesAndLimit: the kernel samples a service at the largest
// share and snap of its captures, lowered as they end; a capture past
// MaxCaptures is refused with ErrBusy and changes nothing.
func TestHubSharesAndLimit(t *testing.T) {
	dp := &fakeDatapath{set: map[string]datapath.Capture{}}
	h := &Hub{dp: dp, log: slog.New(slog.DiscardHandler), sessions: map[*session]struct{}{}}
	small := &session{Request: Request{Service: "web"}, share: 100, kernelSnap: headersSnap}
	big := &session{Request: Request{Service: "web", Payload: true}, share: 5000, kernelSnap: datapath.CaptureSnapMax}
	for _, s := range []*session{small, big} {
		if err := h.register(s); err != nil {
			t.Fatal(err)
		}
	}
	if got := dp.set["web"]; got.Share != 5000 || got.Snap != datapath.CaptureSnapMax {
		t.Errorf("kernel capture %+v, want the larger share and snap", got)
	}
	h.unregister(big)
	if got := dp.set["web"]; got.Share != 100 || got.Snap != headersSnap {
		t.Errorf("kernel capture %+v after the larger one ended, want the smaller's", got)
	}
	for range MaxCaptures - 1 {
		if err := h.register(&session{Request: Request{Service: "other"}, share: service.MaxWeight}); err != nil {
			t.Fatal(err)
		}
	}
	before := dp.set["web"]
	if err := h.register(&session{Request: Request{Service: "web"}, share: service.MaxWeight}); !errors.Is(err, ErrBusy) {
		t.Errorf("capture %d: %v, want ErrBusy", MaxCaptures+1, err)
	}
	if dp.set["web"] != before || len(h.sessions) != MaxCaptures {
		t.Error("a refused capture changed the kernel's sampling or the sessions")
	}
	h.unregister(small)
	if got := dp.set["web"]; got != (datapath.Capture{}) {
		t.Errorf("kernel capture %+v with no capture of web left, want none", got)
	}
}
