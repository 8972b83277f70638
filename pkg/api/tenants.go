package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Tenant is what an admin grants a tenant (GET /v1/tenants, /v1/tenants/{name}).
type Tenant struct {
	Name             string   `json:"name"`
	VIPs             []string `json:"vips"`
	Backends         []string `json:"backends"`
	MaxServices      int      `json:"maxServices"`
	MaxReleases      int      `json:"maxReleases"`
	MaxPins          int      `json:"maxPins"`
	MaxMirrorPercent string   `json:"maxMirrorPercent"`
	MaxCaptures      int      `json:"maxCaptures"`
	MirrorInterfaces []string `json:"mirrorInterfaces,omitempty"`
	AllowReserved    bool     `json:"allowReserved,omitempty"`
	// Use is what the tenant holds now, against the quotas.
	Services int `json:"services"`
	Releases int `json:"releases"`
	Pins     int `json:"pins"`
}

// Tenants lists the tenants the caller may see (an admin all, a tenant
// its own).
func (c *Client) Tenants(ctx context.Context) ([]Tenant, error) {
	var out []Tenant
	return out, c.do(ctx, http.MethodGet, "/v1/tenants"+c.readQuery("?"), "", nil, &out)
}

// Tenant returns one tenant.
func (c *Client) Tenant(ctx context.Context, name string) (Tenant, error) {
	var out Tenant
	return out, c.do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(name)+c.readQuery("?"), "", nil, &out)
}

// DeleteTenant removes a tenant that owns no service (admins only).
func (c *Client) DeleteTenant(ctx context.Context, name string, o WriteOptions) (Write, error) {
	var out Write
	return out, c.do(ctx, http.MethodDelete, "/v1/tenants/"+url.PathEscape(name)+o.query(), "", nil, &out)
}

// DeleteRelease removes a release that is not running.
func (c *Client) DeleteRelease(ctx context.Context, name string, o WriteOptions) (Write, error) {
	var out Write
	return out, c.do(ctx, http.MethodDelete, "/v1/releases/"+url.PathEscape(name)+o.query(), "", nil, &out)
}

// DeleteCascade removes a service and its releases (none running).
func (c *Client) DeleteCascade(ctx context.Context, name string, o WriteOptions) (Write, error) {
	var out Write
	q := o.query()
	if q == "" {
		q = "?cascade=true"
	} else {
		q = "?cascade=true&" + strings.TrimPrefix(q, "?")
	}
	return out, c.do(ctx, http.MethodDelete, "/v1/services/"+url.PathEscape(name)+q, "", nil, &out)
}

// AuditEntry is one write the cluster committed (GET /v1/audit), newest
// first: who sent it, what it did, and whether the state took it.
type AuditEntry struct {
	Index   uint64    `json:"index"`
	At      time.Time `json:"at,omitzero"`
	Token   string    `json:"token,omitempty"` // "": the cluster's own decision
	Peer    string    `json:"peer,omitempty"`
	Tenant  string    `json:"tenant,omitempty"`
	Command string    `json:"command"`
	Result  string    `json:"result,omitempty"` // "": applied
}

// Audit lists the newest writes (limit 0: the agent's default).
func (c *Client) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	path := "/v1/audit"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var out []AuditEntry
	return out, c.do(ctx, http.MethodGet, path, "", nil, &out)
}
