#!/bin/bash
# build-deb.sh: build dist/ledgergate_<version>_{amd64,arm64,armhf}.deb from the
# binaries of `make cross`, with nfpm (pinned below). Run from the repository
# root by `make deb`. VERSION is the git describe string the binaries carry;
# DEB_VERSION may be given to override the Debian version made from it.
set -euo pipefail

NFPM=${NFPM:-github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.41.0}
# Which packages to build, and where to put them (packaging/test.sh builds a
# second, newer amd64 package elsewhere).
ARCHES=${ARCHES:-amd64 arm64 armhf}
OUT=${OUT:-dist}
: "${VERSION:?VERSION (git describe) is needed}"

# A Debian version from git describe (a tag is vX.Y...): v1.2.3 -> 1.2.3; v1.2.3-4-gabc-dirty ->
# 1.2.3+4.gabc.dirty; without a tag: 0.0~git<commits>.<describe>, so that
# later commits sort higher.
deb_version() {
	local d=$1
	if [[ $d =~ ^v?[0-9]+\.[0-9] ]]; then
		d=${d#v}
		d=${d/-/+}
		echo "${d//-/.}"
	else
		local n
		n=$(git rev-list --count HEAD 2>/dev/null || echo 0)
		echo "0.0~git${n}.${d//-/.}"
	fi
}
DEB_VERSION=${DEB_VERSION:-$(deb_version "$VERSION")}
if ! dpkg --validate-version "$DEB_VERSION" 2>/dev/null; then
	echo "build-deb: invalid Debian version $DEB_VERSION" >&2
	exit 1
fi
# --print-version: only print the Debian version (packaging/test.sh).
if [ "${1:-}" = --print-version ]; then
	echo "$DEB_VERSION"
	exit 0
fi

# nfpm.yaml reads the staged files from here.
STAGE=dist/pkg
rm -rf "$STAGE"
mkdir -p "$STAGE"
trap 'rm -rf "$STAGE"' EXIT

# Debian changelog of a native package: one entry for this build.
date=$(git log -1 --format=%cD 2>/dev/null || date -R)
cat >"$STAGE/changelog" <<CL
ledgergate ($DEB_VERSION) unstable; urgency=medium

  * Build of ledgergate $VERSION.

 -- ledgergate maintainers <maintainers@ledgergate.invalid>  $date
CL
gzip -9n <"$STAGE/changelog" >"$STAGE/changelog.gz"
gzip -9n <packaging/ledgergate.1 >"$STAGE/ledgergate.1.gz"

export DEB_VERSION
for DEB_ARCH in $ARCHES; do
	case $DEB_ARCH in
	armhf) bin=dist/ledgergate-linux-armv6 ;; # GOARM=6: runs on every Raspberry Pi
	*) bin=dist/ledgergate-linux-$DEB_ARCH ;;
	esac
	export DEB_ARCH
	[ -f "$bin" ] || { echo "build-deb: $bin missing: run make cross" >&2; exit 1; }
	cp "$bin" "$STAGE/ledgergate"
	out=$OUT/ledgergate_${DEB_VERSION}_${DEB_ARCH}.deb
	rm -f "$out"
	go run "$NFPM" package --config packaging/nfpm.yaml --packager deb --target "$out" >"$STAGE/nfpm.log" 2>&1 ||
		{ cat "$STAGE/nfpm.log" >&2; exit 1; }
	echo "built $out"
done
