package packaging_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/graylane/graylane/internal/testenv"
)

// TestVersion: version.sh gives the versions docs/packaging.md documents,
// each valid for dpkg and later than the one before, in a repository of
// the test's own: no tag, a release candidate, commits after it, the
// release, uncommitted changes, commits after the release.
func TestVersion(t *testing.T) {
	testenv.RequireTool(t, "git", "git")
	testenv.RequireTool(t, "dpkg", "dpkg")
	script, err := filepath.Abs("version.sh")
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	git := func(date string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
			"GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	commit := func(date, content string) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(repo, "f"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		git(date, "add", "f")
		git(date, "commit", "-q", "-m", content)
		return git(date, "rev-parse", "--short=12", "HEAD")[:12]
	}
	version := func() string {
		t.Helper()
		cmd := exec.Command(script)
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("version.sh: %v\n%s", err, out)
		}
		return string(out[:len(out)-1])
	}

	git("", "init", "-q")
	var got, want []string
	step := func(w string) {
		t.Helper()
		got, want = append(got, version()), append(want, w)
	}
	sha := commit("2026-12-01T10:00:00Z", "a")
	step("0.0.0~git20261201.100000." + sha)
	git("", "tag", "v1.2.0-rc1")
	step("1.2.0~rc1")
	sha = commit("2026-12-02T11:30:05+01:00", "b")
	step("1.2.0~rc1+git20261202.103005." + sha)
	git("", "tag", "v1.2.0")
	step("1.2.0")
	if err := os.WriteFile(filepath.Join(repo, "f"), []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	step("1.2.0+dirty")
	sha = commit("2026-12-03T08:00:00Z", "c")
	step("1.2.0+git20261203.080000." + sha)

	for i := range got {
		if got[i] != want[i] {
			t.Errorf("step %d: version %q, want %q", i, got[i], want[i])
		}
		if out, err := exec.Command("dpkg", "--validate-version", got[i]).CombinedOutput(); err != nil {
			t.Errorf("%q is not a Debian version: %s", got[i], out)
		}
		if i > 0 && exec.Command("dpkg", "--compare-versions", got[i-1], "lt", got[i]).Run() != nil {
			t.Errorf("%q does not sort after %q", got[i], got[i-1])
		}
	}
}
