#!/bin/sh
# deploy/build-image.sh [VERSION [TAG]]: builds the container image of
# ../Containerfile as TAG (default tempalias:VERSION) with podman, or with
# $CONTAINER_ENGINE (docker). No base image is pulled: the image holds
# only a static binary, compiled here, and deploy/container.toml.
# VERSION defaults to 0~gitDATE.COMMIT of the checkout (a tag cannot hold
# "~": it becomes "-" there).
set -eu
engine=${CONTAINER_ENGINE:-podman}
cd "$(dirname "$0")/.."
version=${1:-0~git$(git log -1 --format=%cd.%h --date=format:%Y%m%d)}
tag=${2:-tempalias:$(printf %s "$version" | tr '~+' '--')}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=auto \
	-ldflags "-s -w -X main.version=$version" -o "$ctx/tempalias" .
cp deploy/container.toml "$ctx/tempalias.toml"
mkdir "$ctx/data"
"$engine" build --build-arg VERSION="$version" -f Containerfile -t "$tag" "$ctx"
