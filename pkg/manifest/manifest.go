// Package manifest reads and writes Graylane manifests: YAML files holding
// one or more documents (separated by ---) that describe the desired state.
//
// Two kinds of document are read: Service (into service.Service) and
// CanaryRelease (into release.Release). ParseAll and LoadAll return both;
// ParseFile and Load, for callers that take services only, return the
// services.
//
// Reading is strict. An unknown field, a value of the wrong form, or a
// service or release that service.Validate or release.Validate rejects is
// an error that names the file, the line and the field, so an operator can
// fix it without guessing. Every problem is reported, not only the first
// one, and a file with any problem yields nothing (all or nothing).
package manifest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/strictyaml"
	"github.com/graylane/graylane/pkg/tenant"
)

// APIVersion is the manifest API version this package reads and writes.
const APIVersion = "graylane.io/v1"

// The kinds of manifest document.
const (
	KindService       = "Service"
	KindCanaryRelease = "CanaryRelease"
)

// Error is one problem in a manifest file, at a line. When the problem lies
// in a field, Err is a *service.FieldError; errors.As finds it.
type Error = strictyaml.Error

// Set is what a manifest file (or directory) describes.
type Set struct {
	Services []service.Service
	Releases []release.Release
	// Tenants are what admins grant tenants (kind: Tenant).
	Tenants []tenant.Tenant
}

// ParseAll reads the manifest documents in data: the services, validated
// as one desired state (service.ValidateSet), and the releases, each
// validated (release.Validate) and their names unique, with the defaults
// of package release filled in. Both keep the order of the documents.
// That a release's service exists is not checked: it may be applied
// already. name is the file name used in error messages. On error it
// returns nothing and every problem found, joined; each is an *Error.
func ParseAll(name string, data []byte) (Set, error) {
	docs, errs := parse(name, data)
	errs = append(errs, validate(docs)...)
	errs = append(errs, validateTenants(docs)...)
	if len(errs) > 0 {
		return Set{}, errors.Join(errs...)
	}
	return Set{Services: services(docs), Releases: releases(docs), Tenants: tenants(docs)}, nil
}

// ParseFile is ParseAll for callers that take services only. The
// releases a file holds are checked like the services (a bad release
// fails the whole file, as it would with ParseAll), then left out: a file
// that ParseFile accepts is one ParseAll accepts, and a caller that
// ignores releases keeps working on files that hold some. A caller that
// applies what it reads (the agent's seed, the API's apply) must use
// ParseAll, or it drops the releases.
func ParseFile(name string, data []byte) ([]service.Service, error) {
	set, err := ParseAll(name, data)
	return set.Services, err
}

// Load is LoadAll for callers that take services only; it leaves the
// releases out as ParseFile does.
func Load(path string) ([]service.Service, error) {
	set, err := LoadAll(path)
	return set.Services, err
}

// LoadAll reads the manifests at path, a file or a directory, and
// validates all their documents together: the services as one desired
// state, the releases each and their names unique across files. In a
// directory it reads every *.yaml and *.yml file, in lexical order, and
// nothing else: not subdirectories, not hidden files. An empty directory
// is an empty desired state, not an error. Errors are as for ParseAll,
// plus plain errors for files that cannot be read.
func LoadAll(path string) (Set, error) {
	info, err := os.Stat(path)
	if err != nil {
		return Set{}, fmt.Errorf("load manifests: %w", err)
	}
	files := []string{path}
	if info.IsDir() {
		if files, err = manifestFiles(path); err != nil {
			return Set{}, fmt.Errorf("load manifests: %w", err)
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
		return Set{}, errors.Join(errs...)
	}
	return Set{Services: services(docs), Releases: releases(docs)}, nil
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
		if d.svc != nil {
			svcs = append(svcs, *d.svc)
		}
	}
	return svcs
}

func releases(docs []*document) []release.Release {
	var rels []release.Release
	for _, d := range docs {
		if d.rel != nil {
			rels = append(rels, *d.rel)
		}
	}
	return rels
}

// validateReleases checks each release and that their names are unique,
// placing every problem at its field's line.
func validateReleases(docs []*document) []error {
	return validateNamed(docs, "release", func(d *document) (string, func() error, bool) {
		if d.rel == nil {
			return "", nil, false
		}
		return d.rel.Name, d.rel.Validate, true
	})
}

// validateNamed checks the documents of one kind — of returns a
// document's name and validation, ok false for other kinds — each on
// its own and their names unique, placing every problem at its field's
// line.
func validateNamed(docs []*document, kind string, of func(*document) (name string, validate func() error, ok bool)) []error {
	var errs []error
	first := map[string]*document{}
	for _, d := range docs {
		name, validate, ok := of(d)
		if !ok {
			continue
		}
		for _, err := range strictyaml.Leaves(validate()) {
			var fe *service.FieldError
			if !errors.As(err, &fe) {
				errs = append(errs, &Error{File: d.file, Line: d.start, Err: err})
				continue
			}
			if !d.reported(fe.Path) {
				errs = append(errs, d.locate(fe))
			}
		}
		if prev, dup := first[name]; dup && name != "" {
			errs = append(errs, &Error{File: d.file, Line: d.lineOf("metadata.name"), Err: &service.FieldError{Path: "metadata.name",
				Msg: fmt.Sprintf("%s %q is also defined at %s:%d", kind, name, prev.file, prev.lineOf("metadata.name"))}})
		} else {
			first[name] = d
		}
	}
	return errs
}

// validate checks the services of docs as one desired state and places every
// problem in its file, at the line of the field it names. A problem already
// reported while decoding a field is not reported again.
func validate(all []*document) []error {
	errs := validateReleases(all)
	var docs []*document
	for _, d := range all {
		if d.svc != nil {
			docs = append(docs, d)
		}
	}
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
