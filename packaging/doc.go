// Package packaging holds the Debian package of Graylane: `make deb`
// stages the binaries, the systemd unit, the default configuration, the man
// pages and the shell completions, and nfpm (a go.mod tool) packs them as
// nfpm.yaml says, with the maintainer scripts in debian/. version.sh and
// arch.sh turn git's state and GOARCH into the Debian version and
// architecture. docs/packaging.md describes the package; its test builds
// it, runs lintian and installs, removes and purges it in a scratch root.
package packaging
