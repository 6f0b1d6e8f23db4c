#!/usr/bin/env bash
# Build ptyreclaim's container image as an OCI image layout in dist/image,
# for linux/amd64 and linux/arm64, without a Docker daemon. Reproducible:
# run it twice and the digests match (see packaging/image/main.go).
#
# Usage: [VERSION=1.2.3] bash packaging/image/build.sh
# Push:  skopeo copy --all oci:dist/image:VERSION docker://REGISTRY/ptyreclaim:VERSION
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

VERSION=${VERSION:-0.0.0-dev}
VERSION=${VERSION#v}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
export SOURCE_DATE_EPOCH

pkg=github.com/ptyreclaim/ptyreclaim/reclaim/cli
args=()
for arch in amd64 arm64; do
	mkdir -p "dist/image-bin/$arch"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -buildvcs=false \
		-ldflags "-s -w -buildid= -X $pkg.Version=$VERSION -X $pkg.Commit=$COMMIT" \
		-o "dist/image-bin/$arch/ptyreclaim" ./cmd/ptyreclaim
	args+=(-binary "linux/$arch=dist/image-bin/$arch/ptyreclaim")
done
go run ./packaging/image -out dist/image -version "$VERSION" "${args[@]}"
digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' dist/image/index.json)
echo "image: dist/image (oci:dist/image:$VERSION) $digest"
