#!/usr/bin/env bash
# Builds moat_<version>_<arch>.deb with dpkg-deb: the binary, the hardened unit, the commented
# /etc/moat/moat.conf (a conffile), a manual page from the command's help, the docs, and maintainer
# scripts that make the `moat` account (and remove what they made on purge). Checked with lintian.
#
# Usage: scripts/build-deb.sh [--binary PATH] [--version VERSION] [--out DIR]
#   --binary   package this moat binary (default: build `swift build -c release --static-swift-stdlib`,
#              so the target needs no Swift toolchain)
#   --version  the package's version (default: the one `moat --version` prints, kept in one place:
#              Sources/MoatEngine/EngineSettings.swift)
#   --out      where the .deb goes (default: the current directory); its path is printed last
# Needs: dpkg-deb, help2man, gzip, strip (binutils).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary=""
version=""
out=$PWD
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  (cd "$root" && swift build -c release --static-swift-stdlib >&2)
  binary=$root/.build/release/moat
fi
program_version=$("$binary" --version | awk '{print $2}')
version=${version:-$program_version}
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/moat
install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/moat" \
  "$pkg/usr/share/man/man1" "$pkg/usr/share/doc/moat/docs" "$pkg/usr/share/doc/moat/prometheus" \
  "$pkg/usr/share/lintian/overrides"

install -m 0755 "$binary" "$pkg/usr/bin/moat"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$pkg/usr/bin/moat"
sed 's|/usr/local/bin/moat|/usr/bin/moat|g; s|see README.md ("Install")|the moat package|' \
  "$root/packaging/moat.service" >"$pkg/lib/systemd/system/moat.service"
chmod 0644 "$pkg/lib/systemd/system/moat.service"
# Owner and mode (root:moat 0640) are set by postinst, once the account exists.
install -m 0644 "$root/packaging/moat.conf" "$pkg/etc/moat/moat.conf"

help2man --no-info --no-discard-stderr --version-string="$program_version" \
  --name="a memcached-compatible cache server that is secure by default" "$pkg/usr/bin/moat" \
  | gzip -9n >"$pkg/usr/share/man/man1/moat.1.gz"

doc=$pkg/usr/share/doc/moat
install -m 0644 "$root/packaging/debian/copyright" "$doc/copyright"
gzip -9nc "$root/README.md" >"$doc/README.md.gz"
for file in "$root"/docs/*.md; do gzip -9nc "$file" >"$doc/docs/$(basename "$file").gz"; done
install -m 0644 "$root/packaging/prometheus/moat-alerts.yml" "$doc/prometheus/moat-alerts.yml"
{
  echo "moat ($version) unstable; urgency=medium"
  echo
  echo "  * Moat $version; the changes are in the project's git history."
  echo
  echo " -- Moat developers <moat@example.org>  $(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n >"$doc/changelog.gz"
install -m 0644 "$root/packaging/debian/lintian-overrides" "$pkg/usr/share/lintian/overrides/moat"
find "$pkg/usr/share" -type f -exec chmod 0644 {} +

printf '/etc/moat/moat.conf\n' >"$pkg/DEBIAN/conffiles"
for script in postinst prerm postrm; do install -m 0755 "$root/packaging/debian/$script" "$pkg/DEBIAN/$script"; done
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: moat
Version: $version
Architecture: $arch
Maintainer: Moat developers <moat@example.org>
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Depends: adduser, libc6 (>= 2.34), libgcc-s1, libssl3 (>= 3.0.0), libstdc++6 (>= 12)
Section: net
Priority: optional
Description: memcached-compatible cache server that is secure by default
 Moat speaks memcached's text, meta and binary protocols and takes memcached's
 flags, but listens on loopback only, keeps UDP off, refuses key dumps and never
 serves as root. Opening it to a network takes authentication (SASL or ASCII
 auth), an allow list or TLS; tenants, a security log, Prometheus metrics, warm
 restarts and a scanner for exposed memcached servers (moat audit) come with it.
CONTROL

mkdir -p "$out"
deb=$out/moat_${version}_${arch}.deb
dpkg-deb --root-owner-group --build "$pkg" "$deb" >&2
echo "$deb"
