package apiserver

import (
	"errors"
	"log/slog"
	"net/http"
	"testing"

	"github.com/graylane/graylane/pkg/api"
)

// TestMirror: PUT /v1/services/{name}/mirror sets, shows and stops a
// service's mirroring; a bad request is a 400 naming the field and
// changes nothing; a tenant token touches only its tenant's services.
func TestMirror(t *testing.T) {
	n := startNode(t)
	s := New(n, slog.New(slog.DiscardHandler))
	local := s.Local()
	remote := s.Remote([]Token{{Name: "a", Secret: "team-a-secret-0123456789", Tenant: "team-a"}})
	const set = `"mirror":{"percent":"1%","to":"capture","snaplen":256}`
	for _, c := range []call{
		{"POST", "/v1/apply", "", manifestA + "---\n" + manifestB, 200, `"index"`},
		{"GET", "/v1/services/web", "", "", 200, `"weight":"5%"`},
		{"PUT", "/v1/services/web/mirror", "", `{"percent":"0.5","to":"mirror0"}`, 200, `"index"`},
		{"GET", "/v1/services/web", "", "", 200, `"mirror":{"percent":"0.5%","to":"mirror0"}`},
		{"PUT", "/v1/services/web/mirror?wait=applied", "", `{"percent":"1","to":"capture","snaplen":256}`, 200, `"applied":["n1"]`},
		{"GET", "/v1/services/web", "", "", 200, set},
		// Bad input: 400 naming the field, nothing changed.
		{"PUT", "/v1/services/web/mirror", "", `{"off":true,"percent":"1%"}`, 400, "off: turns mirroring off and takes no other field"},
		{"PUT", "/v1/services/web/mirror", "", `{"off":true,"snaplen":64}`, 400, "off: "},
		{"PUT", "/v1/services/web/mirror", "", `{"percent":"1%"}`, 400, `to: is required: an interface name or \"capture\"`},
		{"PUT", "/v1/services/web/mirror", "", `{"to":"capture"}`, 400, "percent: is required"},
		{"PUT", "/v1/services/web/mirror", "", `{}`, 400, "percent: is required"},
		{"PUT", "/v1/services/web/mirror", "", `{"percent":"101%","to":"capture"}`, 400, `percent: weight \"101%\" is above 100%`},
		{"PUT", "/v1/services/web/mirror", "", `{"percent":"0.001","to":"capture"}`, 400, "percent: weight"},
		{"PUT", "/v1/services/web/mirror", "", `{"percent":"1%","to":"capture","snaplen":63}`, 400, "snaplen: 63 is outside 64..65535 bytes"},
		{"PUT", "/v1/services/web/mirror", "", `{"percent":"1%","to":"capture","snaplen":65536}`, 400, "snaplen: 65536 is outside"},
		{"PUT", "/v1/services/web/mirror", "", `{"percent":"1%","to":"capture","snaplen":-1}`, 400, "invalid JSON body"},
		{"PUT", "/v1/services/web/mirror", "", `{"percent":"1%","to":"a/b"}`, 400, `to: \"a/b\" is not an interface name`},
		{"PUT", "/v1/services/web/mirror", "", `{"percent":"1%","to":"capture","snapLength":64}`, 400, `unknown field \"snapLength\"`},
		{"PUT", "/v1/services/web/mirror", "", `{"percent":1,"to":"capture"}`, 400, "invalid JSON body"},
		{"PUT", "/v1/services/nope/mirror", "", `{"percent":"1%","to":"capture"}`, 404, `service \"nope\" does not exist`},
		{"PUT", "/v1/services/web/mirror?wait=soon", "", `{"off":true}`, 400, "wait="},
		{"GET", "/v1/services/web", "", "", 200, set},
	} {
		do(t, local, c)
	}
	do(t, local, call{"POST", "/v1/apply", "", tenantA, 200, `"index"`})
	for _, c := range []call{
		{"PUT", "/v1/services/db/mirror", "team-a-secret-0123456789", `{"percent":"100%","to":"mirror0"}`, 404, `service \"db\" does not exist`},
		{"PUT", "/v1/services/db/mirror", "team-a-secret-0123456789", `{"off":true}`, 404, "does not exist"},
		{"PUT", "/v1/services/web/mirror", "", `{"off":true}`, 401, "no token"},
		{"PUT", "/v1/services/web/mirror", "team-a-secret-0123456789", `{"off":true}`, 200, `"index"`},
	} {
		do(t, remote, c)
	}
	for _, c := range []call{
		{"GET", "/v1/services/db", "", "", 200, `"name":"db"`},
		{"PUT", "/v1/services/web/mirror", "", `{"off":true}`, 200, `"index"`}, // off again: nothing to do, no error
	} {
		do(t, local, c)
	}
	st, _ := n.FSM().State()
	if st.Services["web"].Mirror != nil || st.Services["db"].Mirror != nil {
		t.Fatalf("mirrors after off: web %+v, db %+v", st.Services["web"].Mirror, st.Services["db"].Mirror)
	}
}

// TestDecodeMirror: what a request decodes to.
func TestDecodeMirror(t *testing.T) {
	m, err := DecodeMirror([]byte(`{"percent":" 2.5 % ","to":"mirror0","snaplen":64}`))
	if err != nil || m == nil || m.Percent != 250 || m.To != "mirror0" || m.Snaplen != 64 {
		t.Fatalf("DecodeMirror = %+v, %v", m, err)
	}
	m, err = DecodeMirror([]byte(`{"off":true}`))
	if err != nil || m != nil {
		t.Fatalf("off: %+v, %v; want nil, nil", m, err)
	}
	_, err = DecodeMirror([]byte(`{"percent":"1%","to":"a b","snaplen":1}`))
	var ae *api.Error
	want := `to: "a b" is not an interface name; snaplen: 1 is outside 64..65535 bytes (leave it out, or 0, to keep whole packets)`
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Message != want {
		t.Fatalf("two bad fields: %v; want a 400 %q", err, want)
	}
}

// FuzzDecodeMirror: any body decodes to a mirror that validates, to nil
// (off), or to a 400; never a panic.
func FuzzDecodeMirror(f *testing.F) {
	for _, seed := range []string{`{"percent":"1%","to":"capture","snaplen":256}`, `{"off":true}`, `{"off":false}`, `{"percent":"1%"}`, "{", "[]", `{"snaplen":1e99}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := DecodeMirror(body)
		var ae *api.Error
		switch {
		case err != nil && (!errors.As(err, &ae) || ae.Status != http.StatusBadRequest):
			t.Fatalf("%q: %v, want a 400", body, err)
		case err == nil && m != nil && m.Validate() != nil:
			t.Fatalf("%q: decoded %+v, which does not validate", body, m)
		}
	})
}
