#!/usr/bin/env bash
# Fetches Debian's linux-image-amd64 kernel and installs what a sandbox boot with it needs.
# Not the default kernel any more (that is microsandbox's own, from the microsandbox-kernel
# jar); selected with -Dmicrosandbox.kernel=debian (MSB_KERNEL=debian), and used by
# KernelSelectionIT and the bench's row (a0):
#
#   ${MSB_HOME:-$HOME/.microsandbox}/kernel/<kver>/vmlinux        uncompressed ELF (PVH entry)
#   ${MSB_HOME:-$HOME/.microsandbox}/kernel/<kver>/modules/*.ko   the needed modules, uncompressed
#   ${MSB_HOME:-$HOME/.microsandbox}/kernel/<kver>/modules.order  their load order (deps first)
#   ${MSB_HOME:-$HOME/.microsandbox}/kernel/current -> <kver>
#
# Idempotent: an already complete kernel dir is only re-linked. Needs no root as long as
# the apt package lists are present (`apt-get download` works unprivileged into the cwd).
# Prints the kernel dir on stdout as its last line.
set -euo pipefail
# The kernel lives in the microsandbox home, which is its owner's only (files 0600, dirs 0700).
umask 077

MSB_HOME="${MSB_HOME:-$HOME/.microsandbox}"
KROOT="$MSB_HOME/kernel"
# Exactly the modules a boot needs (each one costs boot time under TCG: the initramfs is
# unpacked and every module relocated in emulation); networking, 9p/virtiofs volumes and
# erofs images add theirs when they arrive. Missing ones are skipped with a note. crc32c_generic
# is listed because ext4 (metadata_csum) asks for "crc32c" via request_module, which
# has no modprobe to call inside the guest. Built-in
# ones (=y in the deb's config) need nothing.
WANTED=(virtio_mmio virtio_blk virtio_console crc32c_generic ext4 overlay)

# What a complete kernel dir was made from; a dir with another stamp is rebuilt.
STAMP="${WANTED[*]} unsigned"

log() { echo "fetch-kernel: $*" >&2; }

# Drops the signature appended to a module. The guest kernel would check it at every boot
# (SHA-512 over the module and an RSA verification, about 0.13 s per boot under TCG), and
# these modules reach the guest in our own initramfs, not through the guest.
strip_signature() {
    local f=$1
    [[ "$(tail -c 28 "$f" | head -c 27)" == "~Module signature appended~" ]] || return 0
    # struct module_signature (12 bytes) precedes the marker; its last 4 bytes: sig_len, big-endian
    local len size
    len=$(tail -c 40 "$f" | head -c 12 | od -An -tu1 | awk '{print $9 * 16777216 + $10 * 65536 + $11 * 256 + $12}')
    size=$(stat -c %s "$f")
    truncate -s $((size - 40 - len)) "$f"
}
die() { log "error: $*"; exit 1; }

for tool in apt-cache apt-get dpkg-deb xz od; do
    command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool"
done

# Resolve the concrete image package behind the metapackage.
pkg="$(apt-cache depends linux-image-amd64 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)"
if [[ -z "$pkg" ]]; then
    if [[ "$(id -u)" != 0 ]]; then
        die "cannot resolve linux-image-amd64: apt package lists missing; run 'apt-get update' as root first"
    fi
    log "no apt package lists; running apt-get update"
    apt-get update -qq
    pkg="$(apt-cache depends linux-image-amd64 2>/dev/null \
            | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)"
    [[ -n "$pkg" ]] || die "cannot resolve linux-image-amd64 to a concrete package"
fi
kver="${pkg#linux-image-}"
kdir="$KROOT/$kver"

# A dir is complete once it holds every file and was made for the current WANTED list.
complete() {
    [[ -s "$kdir/vmlinux" && -s "$kdir/modules.order" ]] || return 1
    [[ "$(cat "$kdir/wanted" 2>/dev/null)" == "$STAMP" ]] || return 1
    local m
    while read -r m; do [[ -s "$kdir/modules/$m" ]] || return 1; done < "$kdir/modules.order"
}

if complete; then
    log "kernel $kver already installed"
else
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/msb-kernel.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    log "downloading $pkg"
    # apt-get warns when its _apt sandbox user cannot write the cwd; harmless.
    (cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>"$tmp/apt.err") \
        || { cat "$tmp/apt.err" >&2; die "apt-get download $pkg failed"; }
    dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/root"

    vmlinuz="$tmp/root/boot/vmlinuz-$kver"
    config="$tmp/root/boot/config-$kver"
    moddir="$tmp/root/lib/modules/$kver"
    [[ -f "$vmlinuz" && -f "$config" && -d "$moddir" ]] || die "unexpected package layout in $pkg"

    # The bzImage carries the kernel as an xz stream; the first xz magic is its start.
    off="$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -n1 | cut -d: -f1)"
    [[ -n "$off" ]] || die "no xz payload in $vmlinuz"
    # xz complains about the bytes after the stream (bzImage trailer); the ELF check decides.
    tail -c +"$((off + 1))" "$vmlinuz" | xz -dc > "$tmp/vmlinux" 2>/dev/null || true
    [[ "$(head -c 4 "$tmp/vmlinux" | od -A n -t x1 | tr -d ' ')" == 7f454c46 ]] \
        || die "extracted vmlinux is not ELF"

    # name -> .ko path (file names use '-' or '_' interchangeably with module names)
    declare -A kopath=()
    while IFS= read -r f; do
        b="${f##*/}"; b="${b%%.ko*}"; kopath["${b//-/_}"]="$f"
    done < <(find "$moddir" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst')

    # A module's dependencies: modinfo (kmod) when installed, else the depends= string of
    # the .modinfo section read straight from the file (kmod is not always present).
    mod_depends() {
        if command -v modinfo >/dev/null 2>&1; then
            modinfo -F depends "$1"
        else
            case "$1" in
                *.ko.xz)  xz -dc "$1" ;;
                *.ko.zst) zstd -dcq "$1" ;;
                *)        cat "$1" ;;
            esac | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n1
        fi
    }

    declare -A seen=()
    order=()
    # Depth-first: a module goes into the order after all of its dependencies.
    visit() {
        local name="${1//-/_}" f dep deps
        [[ -n "${seen[$name]:-}" ]] && return 0
        seen[$name]=1
        f="${kopath[$name]:-}"
        [[ -n "$f" ]] || die "dependency $name has no module file"
        deps="$(mod_depends "$f")"
        for dep in ${deps//,/ }; do visit "$dep"; done
        order+=("$name")
    }
    # modules.builtin lists what is compiled in (=y), which needs no loading.
    declare -A builtin=()
    while IFS= read -r f; do
        b="${f##*/}"; b="${b%%.ko*}"; builtin["${b//-/_}"]=1
    done < "$moddir/modules.builtin"
    for m in "${WANTED[@]}"; do
        if [[ -n "${kopath[$m]:-}" ]]; then
            visit "$m"
        elif [[ -n "${builtin[$m]:-}" ]]; then
            log "note: $m is built in"
        else
            log "note: module $m not in $pkg, skipped"
        fi
    done

    rm -rf "$kdir.partial"
    mkdir -p "$kdir.partial/modules"
    for name in "${order[@]}"; do
        f="${kopath[$name]}"
        case "$f" in
            *.ko.xz)  xz -dc "$f" ;;
            *.ko.zst) zstd -dcq "$f" ;;
            *)        cat "$f" ;;
        esac > "$kdir.partial/modules/$name.ko"
        strip_signature "$kdir.partial/modules/$name.ko"
        echo "$name.ko" >> "$kdir.partial/modules.order"
    done
    cp "$tmp/vmlinux" "$kdir.partial/vmlinux"
    cp "$config" "$kdir.partial/config"
    echo "$STAMP" > "$kdir.partial/wanted"
    rm -rf "$kdir"
    mv "$kdir.partial" "$kdir"
    log "installed $kver: $(tr '\n' ' ' < "$kdir/modules.order")"
fi

ln -sfn "$kver" "$KROOT/current"
echo "$kdir"
