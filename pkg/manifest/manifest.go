// Package manifest reads and writes Graylane manifests: YAML files holding
// one or more documents (separated by ---) that describe the desired state.
//
// Reading is strict. An unknown field, a value of the wrong form, or a
// service that service.Validate rejects is an error that names the file, the
// line and the field, so an operator can fix it without guessing. Every
// problem is reported, not only the first one.
package manifest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/strictyaml"
)

// APIVersion is the manifest API version this package reads and writes.
const APIVersion = "graylane.io/v1"

// The kinds of manifest document.
const (
	KindService = "Service"
	// KindCanaryRelease is recognised but not supported yet.
	KindCanaryRelease = "CanaryRelease"
)

// Error is one problem in a manifest file, at a line. When the problem lies
// in a field, Err is a *service.FieldError; errors.As finds it.
type Error = strictyaml.Error

// ParseFile reads the manifest documents in data and validates the services
// they describe as one desired state (service.ValidateSet). name is the file
// name used in error messages. On error it returns no services and every
// problem found, joined; each is an *Error.
func ParseFile(name string, data []byte) ([]service.Service, error) {
	docs, errs := parse(name, data)
	errs = append(errs, validate(docs)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return services(docs), nil
}

// Load reads the manifests at path, a file or a directory, and validates all
// their services together as one desired state. In a directory it reads every
// *.yaml and *.yml file, in lexical order, and nothing else: not
// subdirectories, not hidden files. An empty directory is an empty desired
// state, not an error. Errors are as for ParseFile, plus plain errors for
// files that cannot be read.
func Load(path string) ([]service.Service, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load manifests: %w", err)
	}
	files := []string{path}
	if info.IsDir() {
		if files, err = manifestFiles(path); err != nil {
			return nil, fmt.Errorf("load manifests: %w", err)
		}
	}
	var docs []*document
	var errs []error
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("load manifests: %w", err))
			continue
		}
		fileDocs, fileErrs := parse(file, data)
		docs = append(docs, fileDocs...)
		errs = append(errs, fileErrs...)
	}
	errs = append(errs, validate(docs)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return services(docs), nil
}

// manifestFiles lists the manifest files of dir in lexical order.
func manifestFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		if ext := filepath.Ext(name); ext == ".yaml" || ext == ".yml" {
			files = append(files, filepath.Join(dir, name))
		}
	}
	return files, nil
}

func services(docs []*document) []service.Service {
	svcs := make([]service.Service, 0, len(docs))
	for _, d := range docs {
		svcs = append(svcs, *d.svc)
	}
	return svcs
}

// validate checks the services of docs as one desired state and places every
// problem in its file, at the line of the field it names. A problem already
// reported while decoding a field is not reported again.
func validate(docs []*document) []error {
	var errs []error
	set := make([]service.Service, len(docs))
	// Each service on its own first: we know which document it came from.
	own := make(map[service.FieldError]bool)
	for i, d := range docs {
		set[i] = *d.svc
		for _, err := range strictyaml.Leaves(d.svc.Validate()) {
			var fe *service.FieldError
			if !errors.As(err, &fe) {
				errs = append(errs, &Error{File: d.file, Line: d.start, Err: err})
				continue
			}
			own[*fe] = true
			if !d.reported(fe.Path) {
				errs = append(errs, d.locate(fe))
			}
		}
	}
	// ValidateSet repeats those checks, reported above, and adds the ones
	// across services (unique names, frontends, backend endpoints). It
	// reports a clash on the later of the two services.
	for _, err := range strictyaml.Leaves(service.ValidateSet(set)) {
		var fe *service.FieldError
		if !errors.As(err, &fe) {
			errs = append(errs, err)
			continue
		}
		if own[*fe] {
			continue
		}
		if err := locateAcross(docs, fe); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// locateAcross places a problem found across services in the last document
// of the service it names, and mentions every document of that name when
// there are several. It returns nil when the field's problem was already
// reported while decoding: a value that did not parse may clash with another
// one that did not either.
func locateAcross(docs []*document, fe *service.FieldError) error {
	var named []*document
	for _, d := range docs {
		if d.svc.Name == fe.Service {
			named = append(named, d)
		}
	}
	if len(named) == 0 {
		return fe
	}
	last := named[len(named)-1]
	if last.reported(fe.Path) {
		return nil
	}
	e := last.locate(fe)
	if len(named) > 1 {
		where := make([]string, len(named))
		for i, d := range named {
			where[i] = fmt.Sprintf("%s:%d", d.file, d.start)
		}
		e.Err = fmt.Errorf("%w: at %s", fe, strings.Join(where, ", "))
	}
	return e
}
