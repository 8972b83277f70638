package apiserver

import (
	"io"
	"net/http"

	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// DecodeMirror reads a mirror request: the mirror it sets, or nil for
// off. Every field is checked here, so a bad request is a 400 naming the
// field before anything is written.
func DecodeMirror(body []byte) (*service.Mirror, error) {
	var req api.MirrorRequest
	if err := decodeJSON(body, &req); err != nil {
		return nil, err
	}
	if req.Off {
		if req.Percent != "" || req.To != "" || req.Snaplen != 0 {
			return nil, apiError(http.StatusBadRequest, "%s", "off: turns mirroring off and takes no other field: send percent and to without off, or off alone")
		}
		return nil, nil
	}
	if req.Percent == "" {
		return nil, apiError(http.StatusBadRequest, "percent: is required: the share of flows to copy, such as 1%% (or send off: true)")
	}
	w, err := service.ParseWeight(req.Percent)
	if err != nil {
		return nil, apiError(http.StatusBadRequest, "percent: %v", err)
	}
	m := &service.Mirror{Percent: w, To: req.To, Snaplen: req.Snaplen}
	if err := m.Validate(); err != nil {
		return nil, apiError(http.StatusBadRequest, "%s", service.FieldMessages(err, "spec.mirror.", ""))
	}
	return m, nil
}

func (s *Server) setMirror(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	m, err := DecodeMirror(body)
	if err != nil {
		return nil, err
	}
	svc, err := s.lookup(r, id)
	if err != nil {
		return nil, err
	}
	return s.write(r, &cluster.SetMirror{Name: svc.Name, Mirror: m})
}
