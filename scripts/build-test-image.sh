#!/bin/sh
# Builds the microsandbox test image: a minimal Debian 12 (bookworm) root filesystem
# directory with python3, used as the sandbox rootfs by the integration tests.
#
# Usage: scripts/build-test-image.sh [DIR]
#   DIR defaults to ${MSB_HOME:-$HOME/.microsandbox}/test-images/debian-python
#
# Environment:
#   MSB_DEBIAN_MIRROR  Debian mirror URL (default: the deb.debian.org-style URL this
#                      machine's apt sources use, else http://deb.debian.org/debian)
#   MSB_TEST_IMAGE_EXTRA_PACKAGES  more packages, comma-separated (setup.sh builds a
#                      second image, debian-systemd, with systemd,systemd-sysv for InitIT)
#
# Idempotent: a finished image carries the marker file .msb-image-complete (written last)
# and is left alone. The image is built in DIR.tmp and renamed into place when done, so an
# interrupted build never looks complete. Needs root (debootstrap, chroot).
set -eu

MARKER=.msb-image-complete
SUITE=bookworm
# small and useful: python3 with its standard library (python3-minimal alone lacks json,
# subprocess, socket helpers...) for code tests; procps (ps, kill, pkill) and
# ca-certificates for process and networking tests
PACKAGES=python3-minimal,python3,procps,ca-certificates${MSB_TEST_IMAGE_EXTRA_PACKAGES:+,$MSB_TEST_IMAGE_EXTRA_PACKAGES}

die() { echo "build-test-image: $*" >&2; exit 1; }

DIR=${1:-${MSB_HOME:-$HOME/.microsandbox}/test-images/debian-python}
DIR=${DIR%/}
[ -n "$DIR" ] || die "empty image directory"

if [ -f "$DIR/$MARKER" ]; then
    echo "test image already built: $DIR ($(du -sh "$DIR" | cut -f1))"
    exit 0
fi
[ ! -e "$DIR" ] || die "$DIR exists but has no $MARKER (incomplete or foreign); remove it first"

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap needs it); try: sudo $0 $*"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found; install it: apt-get install debootstrap"

# The mirror this machine's apt uses: first Debian (not -security) URI in deb822 .sources
# files or one-line sources.list entries.
find_mirror() {
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) print $i }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i !~ /=/) { print $i; break } }' "$f"
    done
}
MIRROR=${MSB_DEBIAN_MIRROR:-$(find_mirror | grep -E '/debian/?$' | grep -v -- '-security' | head -n1 || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

TMP="$DIR.tmp"
mkdir -p "$(dirname "$DIR")"
rm -rf "$TMP"

start=$(date +%s)
echo "building test image in $TMP from $MIRROR (packages: $PACKAGES)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$TMP" "$MIRROR"

# user for user-switching tests (written directly: no useradd in minbase needed)
if ! grep -q '^sandbox:' "$TMP/etc/passwd"; then
    echo 'sandbox:x:1000:1000:sandbox:/home/sandbox:/bin/sh' >>"$TMP/etc/passwd"
    echo 'sandbox:x:1000:' >>"$TMP/etc/group"
    echo 'sandbox:*:19000:0:99999:7:::' >>"$TMP/etc/shadow"
    [ -f "$TMP/etc/gshadow" ] && echo 'sandbox:!::' >>"$TMP/etc/gshadow"
fi
mkdir -p "$TMP/home/sandbox"
chown 1000:1000 "$TMP/home/sandbox"
chmod 0755 "$TMP/home/sandbox"

# keep it small: apt caches and lists, docs, man pages, locales other than C
rm -rf "$TMP/var/cache/apt/"* "$TMP/var/lib/apt/lists/"* \
       "$TMP/usr/share/doc/"* "$TMP/usr/share/man/"* "$TMP/usr/share/info/"* \
       "$TMP/usr/share/lintian" "$TMP/usr/share/linda" \
       "$TMP/var/cache/debconf/"*-old "$TMP/var/log/"*.log "$TMP/var/log/apt/"*
if [ -d "$TMP/usr/share/locale" ]; then
    find "$TMP/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'C' ! -name 'C.*' ! -name 'locale.alias' \
        -exec rm -rf {} +
fi
# no leftovers from the build host
: >"$TMP/etc/resolv.conf" 2>/dev/null || true
rm -f "$TMP/etc/hostname"

date -u +%Y-%m-%dT%H:%M:%SZ >"$TMP/$MARKER"
mv "$TMP" "$DIR"
end=$(date +%s)

echo "test image ready: $DIR"
echo "build time: $((end - start))s, size: $(du -sh "$DIR" | cut -f1)"
