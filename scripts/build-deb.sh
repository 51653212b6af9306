#!/usr/bin/env bash
# Builds dist/desa_<version>-<revision>_amd64.deb (and its debug symbols, a -dbgsym .ddeb)
# with debhelper: release binaries with the Swift runtime linked in (--static-swift-stdlib),
# so the package needs only Debian's libraries; stripped by dh_strip. Needs root's apt for
# debhelper the first time. DESA_DEB_REVISION (default 1) sets the Debian revision,
# DESA_DEB_OUT (default dist) where the packages go.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/.*public static let string = "\([0-9][0-9.]*\)".*/\1/p' Sources/Provisioner/Setup/ServerInit.swift)
revision=${DESA_DEB_REVISION:-1}
[[ -n $version && $revision =~ ^[0-9]+$ ]] || { echo "build-deb: bad version '$version' or revision '$revision'" >&2; exit 2; }
if ! command -v dh >/dev/null || ! command -v dpkg-buildpackage >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debhelper dpkg-dev >/dev/null
fi
# Its own build directory: the debug build and the tests' release build stay as they are.
scratch=.build-deb
swift build -c release --static-swift-stdlib --scratch-path "$scratch"
# The man pages come from the binaries' own --help (swift-argument-parser's generate-manual).
swift build -c release --static-swift-stdlib --scratch-path "$scratch" --product generate-manual
bin=$(swift build -c release --static-swift-stdlib --scratch-path "$scratch" --show-bin-path)

stage=$(mktemp -d /var/tmp/desa-deb.XXXXXX)
trap 'rm -rf "$stage"' EXIT
src=$stage/desa-$version
mkdir -p "$src/bin"
cp -r debian templates systemd README.md "$src/"
cp "$bin/desactl" "$bin/desa-agent" "$src/bin/"
mkdir -p "$src/man"
for tool in desactl desa-agent; do
	"$bin/generate-manual" "$bin/$tool" --section 8 --output-directory "$src/man"
done
# Every key with its default and what it does, as /usr/share/doc/desa/desa.toml.example.
"$bin/desactl" config reference > "$src/debian/desa.toml.example"
cat > "$src/debian/changelog" <<CHANGES
desa ($version-$revision) bookworm; urgency=medium

  * Built from $(git rev-parse --short HEAD 2>/dev/null || echo "a source tree without git").

 -- desa maintainers <maintainers@desa.invalid>  $(date -R)
CHANGES
(cd "$src" && dpkg-buildpackage -b -us -uc >"$stage/build.log" 2>&1) || { tail -40 "$stage/build.log" >&2; exit 1; }
out=${DESA_DEB_OUT:-dist}
mkdir -p "$out"
for f in "$stage"/*.deb "$stage"/*.ddeb; do
	[[ -e $f ]] && mv -f "$f" "$out"/
done
echo "$out/desa_${version}-${revision}_amd64.deb"
