package ctltest

import (
	"net/http"
	"time"

	"github.com/graylane/graylane/pkg/api"
)

// fixtureTenants are the fake agent's tenants.
var fixtureTenants = []api.Tenant{
	{Name: "a", VIPs: []string{"10.0.0.0/24"}, Backends: []string{"10.1.0.0/16", "10.2.0.0/16"}, MaxServices: 20, MaxReleases: 10,
		MaxPins: 1000, MaxMirrorPercent: "5%", Services: 2, Releases: 1, Pins: 3},
	{Name: "ops", VIPs: []string{"10.9.0.0/16"}, Backends: []string{"169.254.0.0/16"}, MaxServices: 5, MaxReleases: 5,
		MaxPins: 10, MaxMirrorPercent: "1%", AllowReserved: true},
}

func getTenants(w http.ResponseWriter, _ *http.Request, _ string) {
	reply(w, 200, fixtureTenants)
}

// getTenant answers "a" and "ops"; any other does not exist.
func getTenant(w http.ResponseWriter, r *http.Request, _ string) {
	for _, t := range fixtureTenants {
		if t.Name == r.PathValue("name") {
			reply(w, 200, t)
			return
		}
	}
	reply(w, 404, api.Error{Message: `tenant "` + r.PathValue("name") + `" does not exist`})
}

// fixtureAudit is the fake agent's record, newest first.
var fixtureAudit = []api.AuditEntry{
	{Index: 57, At: time.Date(2026, 12, 7, 6, 30, 2, 0, time.UTC), Token: "team-a", Peer: "198.51.100.20:51234", Tenant: "a",
		Command: "apply service thief", Result: `service "thief": spec.vip: 10.1.0.21:5432/tcp is a backend endpoint of another tenant's service: a VIP may not take another tenant's traffic`},
	{Index: 55, Command: "rollout auth-v2: rolled-back", Tenant: "a"},
	{Index: 53, At: time.Date(2026, 12, 7, 6, 29, 40, 0, time.UTC), Token: "ops", Peer: "unix socket", Tenant: "a", Command: "set-weight auth 5%"},
}

func getAudit(w http.ResponseWriter, _ *http.Request, _ string) {
	reply(w, 200, fixtureAudit)
}
