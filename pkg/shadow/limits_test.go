package shadow_test

import (
	"testing"

	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/shadow"
)

// TestWholePacketMax: Read's idea of the agent's whole-packet limit is the
// data path's.
func TestWholePacketMax(t *testing.T) {
	if shadow.WholePacketMax != int(datapath.CaptureSnapMax) {
		t.Errorf("WholePacketMax %d, datapath.CaptureSnapMax %d", shadow.WholePacketMax, datapath.CaptureSnapMax)
	}
}
