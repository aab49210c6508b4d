#!/usr/bin/env bash
# Debian 13 "trixie" roots for CI, the OS Raspberry Pi OS is built on, with its
# FFmpeg 7.1 and libFLAC 1.5. Sourced by scripts/trixie.sh; needs root,
# debootstrap and (for arm64) qemu-user-static with binfmt-support.
#
#   trixie_root ARCH         builds the root if it is missing or stale, prints its path
#   in_root ROOT CMD...      runs CMD chrooted in a throw-away overlay of ROOT
#
# A root lives in /var/cache/dtsflac-ci/trixie-ARCH (DTSFLAC_CI_CACHE changes
# the folder) with a stamp naming what it was built from (mirror, packages,
# this recipe); a different stamp rebuilds it. Roots are built in a temporary
# folder and renamed into place, so an interrupted build leaves no half root.
# Runs never change a cached root: `in_root` chroots into an overlay whose
# upper layer is thrown away, inside its own mount namespace, so its mounts
# vanish with it even when a test is killed.
set -euo pipefail

TRIXIE_CACHE=${DTSFLAC_CI_CACHE:-/var/cache/dtsflac-ci}
# Bump when the way a root is made changes (not only its package list).
TRIXIE_RECIPE=1

die() { echo "error: $*" >&2; exit 1; }

# The Debian mirror this machine's apt uses (deb822 or one-line sources).
debian_mirror() {
    if [[ -n ${DTSFLAC_DEBIAN_MIRROR:-} ]]; then echo "$DTSFLAC_DEBIAN_MIRROR"; return; fi
    local uri
    uri=$(grep -hsE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources | awk '{print $2; exit}')
    [[ -n $uri ]] || uri=$(grep -hsE '^deb .*/debian/? ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}')
    [[ -n $uri ]] || die "no Debian mirror in /etc/apt/sources.list*: set DTSFLAC_DEBIAN_MIRROR (e.g. http://deb.debian.org/debian)"
    echo "${uri%/}"
}

# What each root holds. FFmpeg and flac are what the tests are about; the FUSE
# drivers and file-system tools are those the box uses on drives. The arm64
# root leaves the FUSE drivers out: the package recommends them, so
# installing it fetches them from the mirror, as it would on a Pi. python3
# runs ../shared/tools/mkbdmv.py, which the Blu-ray tests author discs with,
# dvdauthor the DVD tests' title sets and genisoimage their ISO images.
trixie_packages() {
    case $1 in
        amd64) echo ffmpeg flac python3 dvdauthor genisoimage fuse3 exfat-fuse ntfs-3g fusefat exfatprogs dosfstools e2fsprogs ;;
        arm64) echo ffmpeg flac ca-certificates ;;
        *) die "no trixie root recipe for architecture $1" ;;
    esac
}

# Mounts binfmt_misc and enables the qemu handler for ARCH's binaries, so a
# chroot into a foreign root runs them under qemu-user-static.
enable_qemu_binfmt() {
    local arch=$1 qemu_name
    case $arch in
        arm64) qemu_name=qemu-aarch64 ;;
        armhf) qemu_name=qemu-arm ;;
        *) die "no qemu handler for $arch" ;;
    esac
    local misc=/proc/sys/fs/binfmt_misc
    if [[ ! -e $misc/register ]]; then
        mount -t binfmt_misc binfmt_misc "$misc" \
            || die "cannot mount binfmt_misc at $misc (needs root and a kernel with CONFIG_BINFMT_MISC)"
    fi
    [[ $(cat "$misc/status") == enabled ]] || echo 1 >"$misc/status"
    if [[ ! -e $misc/$qemu_name ]]; then
        if command -v update-binfmts >/dev/null && [[ -e /usr/share/binfmts/$qemu_name ]]; then
            update-binfmts --enable "$qemu_name" || die "update-binfmts --enable $qemu_name failed"
        elif [[ -e /usr/lib/binfmt.d/$qemu_name.conf ]]; then
            grep -v '^#' "/usr/lib/binfmt.d/$qemu_name.conf" >"$misc/register" \
                || die "registering /usr/lib/binfmt.d/$qemu_name.conf failed"
        else
            die "no binfmt handler for $qemu_name: apt-get install qemu-user-static binfmt-support"
        fi
    fi
    [[ $(head -n 1 "$misc/$qemu_name") == enabled ]] || echo 1 >"$misc/$qemu_name"
    # F (fix binary): the kernel holds the interpreter open, so the root needs
    # no copy of qemu.
    grep -q '^flags: .*F' "$misc/$qemu_name" \
        || die "the $qemu_name binfmt handler lacks the F flag: the chroot cannot find qemu (reinstall qemu-user-static)"
}

trixie_stamp() {
    local arch=$1
    printf 'recipe %s\nsuite trixie\narch %s\nmirror %s\npackages %s\n' \
        "$TRIXIE_RECIPE" "$arch" "$(debian_mirror)" "$(trixie_packages "$arch")"
}

# Runs CMD chrooted in DIR with /proc, /dev and /sys, in a private mount
# namespace (used while building, where DIR itself must change).
chroot_build() {
    local dir=$1
    shift
    # shellcheck disable=SC2016 # expanded by the inner bash
    unshare --mount --propagation private -- bash -euo pipefail -c '
        dir=$1; shift
        mount -t proc proc "$dir/proc"
        mount --rbind /dev "$dir/dev"
        mount --rbind /sys "$dir/sys"
        exec chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"' chroot_build "$dir" "$@"
}

build_trixie_root() {
    local arch=$1 root=$2 mirror packages tmp
    mirror=$(debian_mirror)
    packages=$(trixie_packages "$arch")
    command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
    mkdir -p "$TRIXIE_CACHE"
    tmp=$(mktemp -d "$TRIXIE_CACHE/.build-trixie-$arch.XXXXXX")
    echo "==> building a Debian trixie $arch root in $root from $mirror (packages: $packages)"
    local foreign=()
    [[ $arch == "$(dpkg --print-architecture)" ]] || { enable_qemu_binfmt "$arch"; foreign=(--foreign); }
    if ! debootstrap --variant=minbase --arch="$arch" "${foreign[@]}" trixie "$tmp" "$mirror" >"$tmp.log" 2>&1; then
        tail -n 30 "$tmp.log" >&2
        [[ -f $tmp/debootstrap/debootstrap.log ]] && tail -n 30 "$tmp/debootstrap/debootstrap.log" >&2
        die "debootstrap of trixie $arch failed (log above; is $mirror reachable?)"
    fi
    if [[ ${#foreign[@]} -gt 0 ]]; then
        echo "    second stage under qemu-user-static"
        chroot_build "$tmp" /debootstrap/debootstrap --second-stage >"$tmp.log" 2>&1 \
            || { tail -n 30 "$tmp.log" >&2; die "debootstrap --second-stage of trixie $arch under qemu failed"; }
    fi
    # Never start services from package scripts inside the root.
    printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
    chmod 0755 "$tmp/usr/sbin/policy-rc.d"
    echo "    apt-get install $packages"
    # shellcheck disable=SC2086 # the package list is words
    chroot_build "$tmp" sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends $packages && apt-get clean" \
        >"$tmp.log" 2>&1 || { tail -n 30 "$tmp.log" >&2; die "installing $packages in the trixie $arch root failed"; }
    # Keep the package lists (apt-get install ./x.deb resolves against them),
    # drop downloaded archives.
    rm -f "$tmp.log"
    trixie_stamp "$arch" >"$tmp/.dtsflac-ci-stamp"
    rm -rf "$root.old"
    [[ -e $root ]] && mv "$root" "$root.old"
    mv "$tmp" "$root"
    rm -rf "$root.old"
}

trixie_root() {
    local arch=$1 root
    root=$TRIXIE_CACHE/trixie-$arch
    [[ $(id -u) -eq 0 ]] || die "building and entering the trixie roots needs root"
    [[ $arch == "$(dpkg --print-architecture)" ]] || enable_qemu_binfmt "$arch"
    if [[ ! -f $root/.dtsflac-ci-stamp ]] || ! diff -q <(trixie_stamp "$arch") "$root/.dtsflac-ci-stamp" >/dev/null; then
        build_trixie_root "$arch" "$root" >&2
    fi
    echo "$root"
}

# in_root ROOT [--bind DIR[:AT]]... [--upper DIR] -- CMD...: runs CMD as
# root chrooted in an overlay of ROOT (changes go to a temporary upper layer,
# or to --upper DIR when the caller wants to look at them), with /proc, /dev,
# a fresh /tmp and each --bind DIR at AT (default: the same path) inside. The environment is clean
# but for PATH, HOME=/root, LC_ALL and what DTSFLAC_ROOT_ENV names (NAME=VALUE
# words). IN_ROOT_TIMEOUT=SECONDS limits the run (exit status 124 when hit).
in_root() {
    local root=$1
    shift
    local binds=() upper=""
    while [[ $1 != -- ]]; do
        case $1 in
            --bind) if [[ $2 == *:* ]]; then binds+=("$2"); else binds+=("$2:$2"); fi; shift 2 ;;
            --upper) upper=$2; shift 2 ;;
            *) die "in_root: unknown option $1" ;;
        esac
    done
    shift
    local scratch
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/trixie-run.XXXXXX")
    [[ -n $upper ]] || upper=$scratch/upper
    mkdir -p "$upper" "$scratch/work" "$scratch/merged"
    local rc=0 limit=()
    # A time limit for the whole run (qemu-user can hang, see scripts/test.sh);
    # timeout signals the run's whole process group.
    [[ -z ${IN_ROOT_TIMEOUT:-} ]] || limit=(timeout --kill-after=20 "$IN_ROOT_TIMEOUT")
    # shellcheck disable=SC2016 # expanded by the inner bash
    "${limit[@]}" unshare --mount --propagation private -- bash -euo pipefail -c '
        root=$1 upper=$2 scratch=$3 nbinds=$4; shift 4
        m=$scratch/merged
        mount -t overlay overlay -o "lowerdir=$root,upperdir=$upper,workdir=$scratch/work" "$m"
        mount -t proc proc "$m/proc"
        mount --rbind /dev "$m/dev"
        mount --rbind /sys "$m/sys"
        mount -t tmpfs -o mode=1777 tmpfs "$m/tmp"
        for ((i = 0; i < nbinds; i++)); do
            src=${1%%:*} at=${1#*:}
            mkdir -p "$m$at"
            mount --rbind "$src" "$m$at"
            shift
        done
        exec chroot "$m" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
            HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive ${DTSFLAC_ROOT_ENV:-} "$@"
    ' in_root "$root" "$upper" "$scratch" "${#binds[@]}" "${binds[@]}" "$@" || rc=$?
    rm -rf "$scratch"
    return "$rc"
}
