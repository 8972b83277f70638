//go:build !graylane_upgrade_test

package bpf

import "github.com/cilium/ebpf"

// LoadProgram returns the spec of the steering programs this binary
// carries.
func LoadProgram() (*ebpf.CollectionSpec, error) { return LoadSteer() }
