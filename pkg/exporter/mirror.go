package exporter

import (
	dto "github.com/prometheus/client_model/go"

	"github.com/graylane/graylane/pkg/datapath"
)

// mirrorFamilies are the mirroring and capture counters: a series for each
// service and pool, whether or not the service is mirrored, so that every
// counter exists from the start at 0 (seven samples a pool).
type mirrorFamilies struct {
	packets, bytes, dropped, failed, gso *dto.MetricFamily
	toIface, toCapture                   *dto.LabelPair
}

func newMirrorFamilies() *mirrorFamilies {
	return &mirrorFamilies{
		packets: family("graylane_mirror_packets_total", "Copies of packets of mirrored or captured flows, by where they went (to: interface, the spec.mirror interface; capture, the capture ring).", dto.MetricType_COUNTER),
		bytes:   family("graylane_mirror_bytes_total", "Bytes of the packets counted in graylane_mirror_packets_total, their whole length (before a snaplen cuts the copy), by where the copies went (to: interface, capture).", dto.MetricType_COUNTER),
		dropped: family("graylane_capture_dropped_total", "Packets sampled for a capture that the full capture ring had no room for.", dto.MetricType_COUNTER),
		failed:  family("graylane_mirror_failed_total", "Copies to the mirror interface the kernel refused to make (clone failed): the packet was steered, its copy lost.", dto.MetricType_COUNTER),
		gso:     family("graylane_mirror_gso_total", "Copies to the mirror interface longer than its MTU, segmented on the way out.", dto.MetricType_COUNTER),

		toIface:   label("to", "interface"),
		toCapture: label("to", "capture"),
	}
}

// addServices reads every service's counters in one pass over the map and
// adds their series. If the map cannot be read it adds none.
func (f *mirrorFamilies) addServices(a *arena, v *datapath.View, l *seriesLabels, svcs []datapath.InstalledService) error {
	maxID := uint32(0)
	for _, s := range svcs {
		maxID = max(maxID, s.ID+1)
	}
	all, err := v.AllMirrorStats(maxID)
	if err != nil {
		return err
	}
	for _, s := range svcs {
		f.addService(a, l, label("service", s.Name), &all[s.ID])
	}
	return nil
}

func (f *mirrorFamilies) addService(a *arena, l *seriesLabels, svc *dto.LabelPair, stats *[2]datapath.MirrorStats) {
	node := l.node
	for p, pool := range l.pools {
		ms := &stats[p]
		// Label pairs in name order: node, pool, service, to.
		base := []*dto.LabelPair{node, pool, svc}
		iface := []*dto.LabelPair{node, pool, svc, f.toIface}
		capture := []*dto.LabelPair{node, pool, svc, f.toCapture}
		f.packets.Metric = append(f.packets.Metric, a.counter(iface, ms.Copies), a.counter(capture, ms.Captured))
		f.bytes.Metric = append(f.bytes.Metric, a.counter(iface, ms.CopyBytes), a.counter(capture, ms.CapturedBytes))
		f.dropped.Metric = append(f.dropped.Metric, a.counter(base, ms.CaptureDropped))
		f.failed.Metric = append(f.failed.Metric, a.counter(base, ms.CopyFailed))
		f.gso.Metric = append(f.gso.Metric, a.counter(base, ms.CopyGSO))
	}
}
