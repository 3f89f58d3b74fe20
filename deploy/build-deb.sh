#!/bin/sh
# deploy/build-deb.sh [VERSION [DIR]]: builds tempalias_VERSION_amd64.deb
# in DIR (default: the current directory) with nfpm, fetched and compiled
# through the Go module proxy on first use (nothing else to install).
# VERSION defaults to 0~gitDATE.COMMIT of the checkout.
set -eu
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
out=$(cd "${2:-.}" && pwd)
cd "$(dirname "$0")/.."
version=${1:-0~git$(git log -1 --format=%cd.%h --date=format:%Y%m%d)}
case $version in
[0-9]*) ;;
*) echo "build-deb: version $version must start with a digit (Debian policy 5.6.12)" >&2; exit 2 ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Static, so the package depends on nothing; the version as `tempalias
# version` and the start-up line show it.
CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -buildvcs=auto \
	-ldflags "-s -w -X main.version=$version" -o "$tmp/tempalias" .
TEMPALIAS_BINARY=$tmp/tempalias VERSION=$version \
	go run "$NFPM" package --packager deb --config deploy/nfpm.yaml --target "$out/"
