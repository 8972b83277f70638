package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/pki"
	"github.com/graylane/graylane/pkg/probe"
)

// TestCerts: the certs subcommand writes a CA and node certificates that
// load as the cluster's mutual TLS, and prints each node's tls section.
func TestCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	var out strings.Builder
	if err := run([]string{"certs", "-dir", dir, "gw1=10.0.0.1", "gw2=10.0.0.2,gw2.example.net"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"gw1", "gw2"} {
		if _, _, err := pki.Load(pki.LabFiles(dir, node)); err != nil {
			t.Errorf("%s: %v", node, err)
		}
		if want := "cert: " + filepath.Join(dir, node+".pem"); !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestCertsBadInput: every bad argument is a usage error naming it, and
// nothing is written.
func TestCertsBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "name at least one node"},
		{[]string{"gw1"}, `"gw1": write NODE=HOST`},
		{[]string{"gw1="}, `"gw1=": write NODE=HOST`},
		{[]string{"gw1=10.0.0.1", "gw1=10.0.0.2"}, `node "gw1" is named twice`},
		{[]string{"gw1=10.0.0.1,bad_host!"}, `"bad_host!" is neither`},
		{[]string{"-bogus"}, "flag provided but not defined"},
	} {
		dir := filepath.Join(t.TempDir(), "pki")
		var out strings.Builder
		err := run(append([]string{"certs", "-dir", dir}, tc.args...), &out, &out)
		var usage usageError
		if !errors.As(err, &usage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("certs %v: %v, want a usage error containing %q", tc.args, err, tc.want)
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) > 0 {
			t.Errorf("certs %v wrote %v", tc.args, m)
		}
	}
}

// TestCheck: every feature present on this kernel; one forced off is
// reported with its fallback; a must-have forced off fails naming it.
func TestCheck(t *testing.T) {
	testenv.RequirePrivileges(t)
	var out strings.Builder
	if err := check(nil, &out, nil); err != nil || !strings.Contains(out.String(), "every feature the agent needs is present") {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := check(nil, &out, probe.Disabled("tcx")); err != nil || !strings.Contains(out.String(), "TCX missing: a clsact qdisc with a direct-action filter, and copying for L7 connections instead") {
		t.Fatalf("check without TCX: %v\n%s", err, out.String())
	}
	out.Reset()
	err := check(nil, &out, probe.Disabled("spin_lock"))
	if err == nil || !strings.Contains(err.Error(), "helper bpf_spin_lock") {
		t.Fatalf("check without a must-have: %v\n%s", err, out.String())
	}
}
