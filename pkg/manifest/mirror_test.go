package manifest

import (
	"reflect"
	"strings"
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

// TestMirror: spec.mirror as written reads to the model, snaplen left out
// or null keeping whole packets; Marshal writes snaplen only when set.
func TestMirror(t *testing.T) {
	for _, tt := range []struct {
		mirror string
		want   service.Mirror
	}{
		{mirror: "{percent: 1%, to: mirror0}", want: service.Mirror{Percent: 100, To: "mirror0"}},
		{mirror: "{percent: 0.5, to: capture, snaplen: 256}", want: service.Mirror{Percent: 50, To: "capture", Snaplen: 256}},
		{mirror: `{percent: "100%", to: capture, snaplen: "65535"}`, want: service.Mirror{Percent: 10000, To: "capture", Snaplen: 65535}},
		{mirror: "{percent: 1%, to: capture, snaplen: 64}", want: service.Mirror{Percent: 100, To: "capture", Snaplen: 64}},
		{mirror: "{percent: 1%, to: capture, snaplen: 0}", want: service.Mirror{Percent: 100, To: "capture"}},
		{mirror: "{percent: 1%, to: capture, snaplen: ~}", want: service.Mirror{Percent: 100, To: "capture"}},
	} {
		t.Run(tt.mirror, func(t *testing.T) {
			in := strings.Replace(doc, "weight: 5%", "weight: 5%\n  mirror: "+tt.mirror, 1)
			svcs, err := ParseFile("m.yaml", []byte(in))
			if err != nil {
				t.Fatal(err)
			}
			if got := svcs[0].Mirror; got == nil || *got != tt.want {
				t.Fatalf("mirror %s read as %+v, want %+v", tt.mirror, got, tt.want)
			}
			out, err := Marshal(svcs)
			if err != nil {
				t.Fatal(err)
			}
			if hasSnaplen := strings.Contains(string(out), "snaplen:"); hasSnaplen != (tt.want.Snaplen != 0) {
				t.Errorf("marshalled with snaplen %d:\n%s", tt.want.Snaplen, out)
			}
			back, err := ParseFile("m.yaml", out)
			if err != nil || !reflect.DeepEqual(back, svcs) {
				t.Errorf("read back %+v, %v; want %+v", back, err, svcs)
			}
		})
	}
}
