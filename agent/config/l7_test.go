package config

import (
	"strings"
	"testing"
	"time"
)

// TestL7: the l7 section's defaults, a full one, and each bad value named.
func TestL7(t *testing.T) {
	const ifc = "interfaces: [{name: eth0, role: client}]\n"
	c, err := Parse("agent.yaml", []byte(ifc))
	if err != nil || c.L7 != (L7{}) {
		t.Fatalf("no l7 section: %+v, %v", c.L7, err)
	}
	c, err = Parse("agent.yaml", []byte(ifc+"l7: {splice: kernel, headTimeout: 2s, connectTimeout: 1s, maxHeadBytes: 8192, maxPending: 64, source: client}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if head, connect := c.L7.Durations(); c.L7.Splice != L7SpliceKernel || head != 2*time.Second || connect != time.Second ||
		c.L7.MaxHeadBytes != 8192 || c.L7.MaxPending != 64 || c.L7.Source != L7SourceClient {
		t.Errorf("parsed %+v", c.L7)
	}
	for in, want := range map[string]string{
		"l7: {splice: sockmap}":                        "l7.splice",
		"l7: {source: backend}":                        "l7.source",
		"l7: {headTimeout: forever}":                   "l7.headTimeout",
		"l7: {connectTimeout: 2h}":                     "l7.connectTimeout",
		"l7: {maxHeadBytes: 1048576}":                  "l7.maxHeadBytes",
		"l7: {maxPending: -1}":                         "l7.maxPending",
		"l7: {proxy: envoy}":                           "proxy",
		"l7: {accept: ebpf}":                           "l7.accept",
		"l7: {accept: kernel, splice: copy}":           "l7.accept",
		"l7: {accept: kernel, source: client}":         "l7.accept",
		"l7: {accept: kernel, acceptPorts: 100-200}":   "l7.acceptPorts",
		"l7: {accept: kernel, acceptPorts: 2000-1000}": "l7.acceptPorts",
		"l7: {accept: kernel, acceptPorts: 1024-9999}": "l7.acceptPorts",
	} {
		if _, err := Parse("agent.yaml", []byte(ifc+in+"\n")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %s", in, err, want)
		}
	}
}
