//go:build graylane_upgrade_test

package bpf

import "github.com/cilium/ebpf"

// LoadProgram returns the spec of the steering programs this binary
// carries: in a build with the tag graylane_upgrade_test, the changed
// program of the upgrade test.
func LoadProgram() (*ebpf.CollectionSpec, error) { return LoadSteerUpgrade() }
