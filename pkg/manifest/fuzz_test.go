package manifest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/graylane/graylane/pkg/strictyaml"
)

// FuzzParseFile checks that ParseFile never panics, that every error it
// returns is located in the file, and that what it accepts survives a
// Marshal round trip.
func FuzzParseFile(f *testing.F) {
	for _, dir := range []string{goodDir, badDir, releasesDir} {
		err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			f.Add(data)
			return err
		})
		if err != nil {
			f.Fatal(err)
		}
	}
	f.Add([]byte(doc))
	f.Add([]byte(laughs()))
	f.Add([]byte(strings.Replace(doc, "weight: 5%", "weight: 5%\n  pins: &p [*p]", 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := ParseAll("fuzz.yaml", data)
		if err != nil {
			for _, e := range strictyaml.Leaves(err) {
				var me *Error
				if !errors.As(e, &me) || me.File != "fuzz.yaml" {
					t.Fatalf("error %q is not an *Error of fuzz.yaml", e)
				}
			}
			return
		}
		out, err := MarshalAll(set)
		if err != nil {
			t.Fatalf("MarshalAll of what ParseAll accepted: %v", err)
		}
		back, err := ParseAll("marshalled.yaml", out)
		if err != nil {
			t.Fatalf("ParseAll of what MarshalAll wrote: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, set) {
			t.Fatalf("round trip changed the manifests:\n%+v\n%+v\n%s", set, back, out)
		}
	})
}
