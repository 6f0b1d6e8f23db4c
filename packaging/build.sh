#!/usr/bin/env bash
# Build the ptyreclaim Linux packages into dist/:
#   dist/ptyreclaim                 static binary (CGO_ENABLED=0, -trimpath)
#   dist/gen/{completions,man}      from the cobra commands (packaging/gen)
#   dist/doc/                       docs shipped in /usr/share/doc/ptyreclaim
#   dist/ptyreclaim_<ver>_<arch>.deb, dist/ptyreclaim-<ver>-1.<arch>.rpm
#
# Usage (from anywhere, as root in CI): [VERSION=1.2.3] bash packaging/build.sh
# Environment: VERSION (default 0.0.0-dev; a leading "v" is dropped),
# GOARCH (default: the host's), SOURCE_DATE_EPOCH (default: the last commit's
# time, so man page dates and file times are reproducible).
# Installs nfpm with "go install" when it is missing; needs git, go, gzip.
set -euo pipefail

# nfpm v2.46 and later import go.digitalxero.dev modules that the module
# proxy here refuses (403); v2.45.2 is the newest that installs, and builds
# with Go 1.26.
NFPM_VERSION=v2.45.2

cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$(date +%s)

die() {
	echo "build.sh: $*" >&2
	exit 1
}

command -v go >/dev/null || die "go is not installed (need Go 1.26, see go.mod)"
command -v gzip >/dev/null || die "gzip is not installed (apt-get install gzip)"

VERSION=${VERSION:-0.0.0-dev}
VERSION=${VERSION#v}
GOARCH=${GOARCH:-$(go env GOARCH)}
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export VERSION GOARCH SOURCE_DATE_EPOCH

# Remove only what this script makes; dist/ may hold other things.
rm -rf dist/ptyreclaim dist/gen dist/doc dist/ptyreclaim_*.deb dist/ptyreclaim-*.rpm
mkdir -p dist

echo "build.sh: ptyreclaim $VERSION (commit $COMMIT) linux/$GOARCH"

# 1. Static binary.
pkg=github.com/ptyreclaim/ptyreclaim/reclaim/cli
CGO_ENABLED=0 GOOS=linux GOARCH=$GOARCH go build -trimpath \
	-ldflags "-s -w -X $pkg.Version=$VERSION -X $pkg.Commit=$COMMIT" \
	-o dist/ptyreclaim ./cmd/ptyreclaim
if [ "$GOARCH" = "$(go env GOHOSTARCH)" ]; then
	dist/ptyreclaim version || die "the built binary does not run: dist/ptyreclaim version failed"
fi

# 2. Completions and man pages (the generator runs on the host).
GOOS='' GOARCH='' go run ./packaging/gen -out dist/gen -version "$VERSION"
gzip -9n dist/gen/man/*.1

# 3. Docs. README.md and SECURITY.md come from the repository root; a missing
# one is a warning here and a failure in check-deb.sh.
mkdir -p dist/doc
for f in README.md SECURITY.md; do
	if [ -f "$f" ]; then
		cp "$f" dist/doc/
	else
		echo "build.sh: WARNING: $f is missing from the repository root; the package will not have /usr/share/doc/ptyreclaim/$f" >&2
	fi
done
cp packaging/README.md dist/doc/packaging.md

# 4. nfpm.
NFPM=$(command -v nfpm || true)
if [ -z "$NFPM" ] && [ -x "$(go env GOPATH)/bin/nfpm" ]; then
	NFPM=$(go env GOPATH)/bin/nfpm
fi
if [ -z "$NFPM" ]; then
	echo "build.sh: installing nfpm $NFPM_VERSION with go install"
	GOOS='' GOARCH='' GOFLAGS='' go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION" ||
		die "go install nfpm@$NFPM_VERSION failed"
	NFPM=$(go env GOPATH)/bin/nfpm
fi
for p in deb rpm; do
	"$NFPM" package --config packaging/nfpm.yaml --packager "$p" --target dist/ ||
		die "nfpm could not build the .$p"
done

ls -l dist/*.deb dist/*.rpm
echo "build.sh: done in $(($(date +%s) - start)) s"
