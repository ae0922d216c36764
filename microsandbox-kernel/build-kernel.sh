#!/usr/bin/env bash
# Builds the microsandbox guest kernel from Debian's linux-source-6.1 and the config
# fragment config/microsandbox.config, once per (source version, fragment, recipe):
#
#   build-kernel.sh OUTDIR
#
# after applying patches/*.patch in name order (small changes of our own, each saying why in
# its header), puts into OUTDIR (the Maven module's classes dir, so the jar carries them):
#   vmlinux.gz        the uncompressed PVH-bootable vmlinux, gzip-compressed for the jar
#   config            the kernel's full .config
#   kernel.properties source version, cache key, sizes
#
# The build is cached in $MSB_KERNEL_CACHE/<key>/ (default
# ${MSB_HOME:-$HOME/.microsandbox}/kernel-build), key = <source version>-<sha256 of the
# fragment, the patches and this recipe, 12 hex digits>: with nothing changed a build only
# copies the cached files; a changed fragment or patch or a new linux-source package builds
# anew. Old keys stay
# until removed by hand (about 4 MiB each).
#
# Environment (tests use these to build from a tiny fake source):
#   MSB_KERNEL_SOURCE          source tarball (default /usr/src/linux-source-6.1.tar.xz)
#   MSB_KERNEL_SOURCE_VERSION  its version (default: dpkg's version of linux-source-6.1)
#   MSB_KERNEL_FRAGMENT        the config fragment (default: config/microsandbox.config)
#   MSB_KERNEL_PATCHES         a directory of patches (default: patches/)
#   MSB_KERNEL_CACHE           the cache directory
#   MSB_KERNEL_JOBS            make -j (default 2); the compile runs under nice -n 19
set -euo pipefail
umask 077
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "build-kernel: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 1 ] || die "usage: build-kernel.sh OUTDIR"
out=$1
src=${MSB_KERNEL_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
fragment=${MSB_KERNEL_FRAGMENT:-$here/config/microsandbox.config}
patches=${MSB_KERNEL_PATCHES:-$here/patches}
cache=${MSB_KERNEL_CACHE:-${MSB_HOME:-$HOME/.microsandbox}/kernel-build}
jobs=${MSB_KERNEL_JOBS:-2}

[ -f "$fragment" ] || die "no config fragment at $fragment"
if [ -n "${MSB_KERNEL_SOURCE_VERSION:-}" ]; then
    version=$MSB_KERNEL_SOURCE_VERSION
else
    version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || true)
    [ -n "$version" ] || die "linux-source-6.1 is not installed (scripts/setup.sh installs it)"
fi
# The recipe: this script's build steps. Bump it when they change what comes out.
recipe="patch+tinyconfig+merge_config+olddefconfig+vmlinux+gzip r2"
patch_files=()
if [ -d "$patches" ]; then
    mapfile -t patch_files < <(find "$patches" -maxdepth 1 -name '*.patch' | LC_ALL=C sort)
fi
hash=$( { cat "$fragment"; for p in "${patch_files[@]}"; do basename "$p"; cat "$p"; done; echo "$recipe"; } \
    | sha256sum | cut -c1-12)
key="${version//[^A-Za-z0-9.+-]/_}-$hash"
dir="$cache/$key"

complete() { [ -s "$dir/vmlinux.gz" ] && [ -s "$dir/config" ] && [ -s "$dir/kernel.properties" ]; }

# Fails when an option the fragment asks for did not make it into .config.
verify_config() {
    local config=$1 line name want bad=0
    while IFS= read -r line; do
        if [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
            name=${BASH_REMATCH[1]}; want=${BASH_REMATCH[2]}
            if ! grep -qxF "$name=$want" "$config"; then
                log "config: $name=$want was asked for, the merged config has: $(grep -E "^(# )?$name[= ]" "$config" || echo nothing)"
                bad=1
            fi
        elif [[ "$line" =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
            name=${BASH_REMATCH[1]}
            if grep -qE "^$name=" "$config"; then
                log "config: $name was asked to be off, the merged config has: $(grep -E "^$name=" "$config")"
                bad=1
            fi
        fi
    done < "$fragment"
    return $bad
}

if complete; then
    log "kernel $key: cached in $dir"
else
    [ -f "$src" ] || die "no kernel source at $src (apt-get install linux-source-6.1)"
    tools="make tar gzip patch"
    [ -n "${MSB_KERNEL_SOURCE:-}" ] || tools="$tools gcc flex bison bc xz"
    for tool in $tools; do
        command -v "$tool" >/dev/null || die "missing build tool: $tool (scripts/setup.sh installs them)"
    done
    mkdir -p "$cache"
    work=$(mktemp -d "$cache/.build-$key.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    start=$(date +%s)
    log "building kernel $key from $src (make -j$jobs, a few minutes on 2 cores)"
    tar -xf "$src" -C "$work" --strip-components=1
    for p in "${patch_files[@]}"; do
        patch -d "$work" -p1 --forward --batch --quiet < "$p" >&2 || die "patch $(basename "$p") does not apply to $src"
    done
    (
        cd "$work"
        make -s tinyconfig >/dev/null
        scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null
        make -s olddefconfig >/dev/null
    )
    verify_config "$work/.config" || die "the merged config lacks options of $fragment (see above)"
    nice -n 19 make -C "$work" -s -j"$jobs" vmlinux >&2 || die "make vmlinux failed"
    [ "$(head -c 4 "$work/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || die "vmlinux is not ELF"
    mkdir -p "$dir.partial"
    gzip -9 -n -c "$work/vmlinux" > "$dir.partial/vmlinux.gz"
    cp "$work/.config" "$dir.partial/config"
    {
        echo "source.version=$version"
        echo "key=$key"
        echo "release=$(cat "$work/include/config/kernel.release" 2>/dev/null || echo unknown)"
        echo "vmlinux.size=$(stat -c %s "$work/vmlinux")"
        echo "hz=$(sed -n 's/^CONFIG_HZ=//p' "$work/.config")"
        # the boot parameters the patches add, from their "Boot-Parameter:" lines
        echo "boot.params=$(cat /dev/null "${patch_files[@]}" | sed -n 's/^Boot-Parameter: *//p' | paste -sd,)"
    } > "$dir.partial/kernel.properties"
    rm -rf "$dir"
    mv "$dir.partial" "$dir"
    log "kernel $key built in $(( $(date +%s) - start )) s: $(stat -c %s "$work/vmlinux") bytes uncompressed, $(stat -c %s "$dir/vmlinux.gz") compressed"
fi

mkdir -p "$out"
for f in vmlinux.gz config kernel.properties; do
    cmp -s "$dir/$f" "$out/$f" 2>/dev/null || cp "$dir/$f" "$out/$f"
done
echo "$dir"
