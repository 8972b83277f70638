// Package version holds the version of the Graylane binaries, set at link
// time: go build -ldflags "-X github.com/graylane/graylane/pkg/version.Version=v1.2.3".
package version

// Version is the release this binary was built from.
var Version = "dev"
