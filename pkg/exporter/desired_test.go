package exporter

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/service"
)

// plainSource is a Source that does not know the desired state.
type plainSource struct{}

func (plainSource) Services() []datapath.InstalledService { return nil }
func (plainSource) View() *datapath.View                  { return nil }
func (plainSource) FlowTable() (int, int)                 { return 0, 0 }
func (plainSource) FlowChurn() datapath.FlowChurn         { return datapath.FlowChurn{} }
func (plainSource) Attachments() []datapath.Attachment    { return nil }

// desiredSource adds the replicated state's weights.
type desiredSource struct {
	plainSource
	weights map[string]service.Weight
}

func (d desiredSource) DesiredWeights() map[string]service.Weight { return d.weights }

// TestDesiredFamily: one gauge per service of the replicated state, by
// name, as a ratio, under the node and service labels; none from a source
// that does not know the state.
func TestDesiredFamily(t *testing.T) {
	node := label("node", "n1")
	src := desiredSource{weights: map[string]service.Weight{"web": 2500, "api": 0, "db": service.MaxWeight}}
	f := New("n1", src).desiredFamily(node)
	if f.GetName() != "graylane_canary_weight_desired_ratio" || f.GetType() != dto.MetricType_GAUGE || f.GetHelp() == "" {
		t.Fatalf("family %q type %v help %q", f.GetName(), f.GetType(), f.GetHelp())
	}
	want := []struct {
		svc string
		v   float64
	}{{"api", 0}, {"db", 1}, {"web", 0.25}}
	if len(f.Metric) != len(want) {
		t.Fatalf("%d series, want %d", len(f.Metric), len(want))
	}
	for i, w := range want {
		m := f.Metric[i]
		if len(m.Label) != 2 || m.Label[0].GetValue() != "n1" || m.Label[1].GetName() != "service" || m.Label[1].GetValue() != w.svc {
			t.Errorf("series %d: labels %v, want node=n1, service=%s", i, m.Label, w.svc)
		}
		if got := m.GetGauge().GetValue(); got != w.v {
			t.Errorf("%s: %v, want %v", w.svc, got, w.v)
		}
	}
	if f := New("n1", plainSource{}).desiredFamily(node); len(f.Metric) != 0 {
		t.Errorf("a source without the desired state gave %d series", len(f.Metric))
	}
}
