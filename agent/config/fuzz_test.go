package config

import (
	"errors"
	"os"
	"testing"

	"github.com/graylane/graylane/pkg/strictyaml"
)

// FuzzParse checks that Parse never panics, that every error it returns is
// located in the file, and that what it accepts is valid.
func FuzzParse(f *testing.F) {
	data, err := os.ReadFile("testdata/agent.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("interfaces: [{name: eth0, role: client}]\n"))
	f.Add([]byte("defaults: &d {name: eth0, role: client}\ninterfaces: [*d, *d]\nlisten: &l {api: x}\n"))
	f.Add([]byte("interfaces: &i [*i]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			for _, e := range strictyaml.Leaves(err) {
				var ce *Error
				if !errors.As(e, &ce) || ce.File != "fuzz.yaml" {
					t.Fatalf("error %q is not an *Error of fuzz.yaml", e)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that does not validate: %v", err)
		}
	})
}
