package manifest

import (
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/strictyaml"
	"github.com/graylane/graylane/pkg/tenant"
)

// document is one YAML document of a manifest file on its way to the model:
// where it came from, where each of its fields is, and what went wrong.
type document struct {
	file   string
	start  int              // line of the document's first node
	lines  strictyaml.Lines // field path ("spec.pins[0].prefix") -> line
	bad    map[string]bool  // field paths whose problem is already reported
	errs   []error
	svc    *service.Service // set when the document is a Service
	rel    *release.Release // set when the document is a CanaryRelease
	ten    *tenant.Tenant   // set when the document is a Tenant
	walked *int             // values check visited in the file (bounded by maxWalk)
}

// maxDocuments bounds the documents of one manifest file (one API
// request's body): a fleet's services fit many times over.
const maxDocuments = 10_000

// parse reads every document of one manifest file. It returns the documents
// that describe a service or a release, even a faulty one, so that the set can still be
// checked for clashes, and the problems of all documents.
func parse(file string, data []byte) ([]*document, []error) {
	var docs []*document
	var errs []error
	// The documents before a syntax error are still checked.
	tops, syntaxErr := strictyaml.Documents(file, data)
	if len(tops) > maxDocuments {
		return nil, []error{&Error{File: file, Line: tops[maxDocuments].Line,
			Err: fmt.Errorf("more than %d documents in one file: split it", maxDocuments)}}
	}
	// One walk budget for the whole file: many small documents whose
	// aliases repeat them cost no more than one large one.
	walked := 0
	for _, top := range tops {
		d := &document{
			file:   file,
			start:  top.Line,
			lines:  make(strictyaml.Lines),
			bad:    make(map[string]bool),
			walked: &walked,
		}
		d.decode(top)
		errs = append(errs, d.errs...)
		if d.svc != nil || d.rel != nil || d.ten != nil {
			docs = append(docs, d)
		}
	}
	if syntaxErr != nil {
		errs = append(errs, syntaxErr)
	}
	return docs, errs
}

// decode reads the document's apiVersion and kind, and hands the document to
// the decoder of its kind.
func (d *document) decode(top *yaml.Node) {
	if top.Kind != yaml.MappingNode {
		d.errs = append(d.errs, &Error{File: d.file, Line: top.Line,
			Err: errors.New("a manifest document is a mapping that starts with apiVersion and kind")})
		return
	}
	apiVersion, okVersion := d.header(top, "apiVersion")
	kind, okKind := d.header(top, "kind")
	switch {
	case !okVersion:
	case apiVersion == "":
		d.failField("apiVersion", "is required: use %s", APIVersion)
	case apiVersion != APIVersion:
		d.failField("apiVersion", "%q is not supported: use %s", apiVersion, APIVersion)
	}
	if !okKind {
		return
	}
	// Each kind has its own decoder; a new kind is a new case.
	switch kind {
	case KindService:
		if d.bad["apiVersion"] {
			return
		}
		d.svc = d.decodeService(top)
	case KindCanaryRelease:
		if d.bad["apiVersion"] {
			return
		}
		d.rel = d.decodeRelease(top)
	case KindTenant:
		if d.bad["apiVersion"] {
			return
		}
		d.ten = d.decodeTenant(top)
	case "":
		d.failField("kind", "is required: use %s, %s or %s", KindService, KindCanaryRelease, KindTenant)
	default:
		d.failField("kind", "%q is not a kind of Graylane manifest: use %s, %s or %s", kind, KindService, KindCanaryRelease, KindTenant)
	}
}

// header returns the scalar value of key in the top-level mapping, "" when
// absent, and false when it is present but not a scalar (which it reports).
func (d *document) header(top *yaml.Node, key string) (string, bool) {
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value != key {
			continue
		}
		d.lines[key] = k.Line
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		if strictyaml.IsNull(v) {
			return "", true
		}
		if v.Kind != yaml.ScalarNode {
			d.failField(key, "must be a single value, not %s", strictyaml.Describe(v))
			return "", false
		}
		return v.Value, true
	}
	return "", true
}

// fail reports a problem with the field at path, found on line, unless a
// problem with that field or one holding it is already reported.
func (d *document) fail(path string, line int, format string, args ...any) {
	if d.reported(path) {
		return
	}
	d.bad[path] = true
	d.errs = append(d.errs, &Error{File: d.file, Line: line,
		Err: &service.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}})
}

// failField reports a problem with the field at path, on the field's line.
func (d *document) failField(path, format string, args ...any) {
	d.fail(path, d.lineOf(path), format, args...)
}

// locate places a problem that validation found in this document.
func (d *document) locate(fe *service.FieldError) *Error {
	return &Error{File: d.file, Line: d.lineOf(fe.Path), Err: fe}
}

// lineOf returns the line of the field at path, or of the closest field
// holding it, or the document's first line.
func (d *document) lineOf(path string) int {
	if line := d.lines.Of(path); line > 0 {
		return line
	}
	return d.start
}

// reported reports whether a problem with the field at path, or with a field
// holding it, has been reported.
func (d *document) reported(path string) bool {
	for p := path; p != ""; p = strictyaml.Parent(p) {
		if d.bad[p] {
			return true
		}
	}
	return false
}
