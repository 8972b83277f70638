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

// FuzzParseFile checks that ParseAll never panics on any file, of
// Services, CanaryReleases or both, that every error it returns is located
// in the file, and that what it accepts survives a MarshalAll round trip.
// (The name is older than ParseAll; the corpus in testdata/fuzz keeps it.)
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
	f.Add([]byte(relDoc))
	f.Add([]byte(doc + "---\n" + relDoc))
	if golden, err := os.ReadFile(filepath.Join("testdata", "release-every-field.golden.yaml")); err == nil {
		f.Add(golden)
	}
	f.Add([]byte(strings.NewReplacer("errorRateAtMost: 1.2%, ", "", "3.5%", "0.03%", "exec: [sh, -c,", "exec: [sh, ~, '',").Replace(relDoc)))
	f.Add([]byte(withMatch("protocol: tcp\n  app: grpc", everyRule)))
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
