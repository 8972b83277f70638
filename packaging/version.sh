#!/bin/sh
# Prints the Debian version of the checked-out commit (docs/packaging.md,
# "Versioning"). The same commit and work-tree state always give the same
# version; later commits sort later as long as their committer dates do.
#   HEAD tagged vX.Y.Z:        X.Y.Z
#   commits after vX.Y.Z:      X.Y.Z+git<YYYYMMDD>.<HHMMSS>.<sha>
#   no vX.Y.Z tag behind HEAD: 0.0.0~git<YYYYMMDD>.<HHMMSS>.<sha>
# The date and time are HEAD's committer date in UTC, the sha its first 12
# hex digits; a "-" in a tag (v1.2.0-rc1) becomes "~" (1.2.0~rc1 sorts
# before 1.2.0, as a release candidate should). Uncommitted changes to
# tracked files add "+dirty".
set -eu
sha=$(git rev-parse --short=12 HEAD)
stamp=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d.%H%M%S HEAD)
tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' HEAD 2>/dev/null || true)
if [ -z "$tag" ]; then
	version="0.0.0~git$stamp.$sha"
else
	base=$(printf '%s' "${tag#v}" | tr -- - '~')
	if [ "$(git rev-parse "$tag^{commit}")" = "$(git rev-parse HEAD)" ]; then
		version="$base"
	else
		version="$base+git$stamp.$sha"
	fi
fi
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
	version="$version+dirty"
fi
echo "$version"
