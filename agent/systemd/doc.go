// Package systemd holds what `make install` lays out for systemd: the unit
// graylane-agent.service (Type=notify, restart on failure, the capabilities
// the agent needs and no more, a read-only system but for the paths it
// writes) and the default /etc/graylane/agent.yaml. Its test installs into
// a scratch root and checks the layout and `systemd-analyze verify`, and
// validates the repository's multi-VM Vagrantfile.
package systemd
