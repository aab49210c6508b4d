#!/usr/bin/env bash
# Runs inside the arm64 trixie root, every program under qemu-user-static
# (scripts/trixie.sh arm64 starts it):
#
#   trixie-arm64-inside.sh BINARY DEB SAMPLES OUT
#
# 1. the aarch64 release BINARY: doctor, scan --json, convert of every stream
#    in SAMPLES into OUT/flac (checked against the masters afterwards, on the
#    host, by tests/engine.rs), each FLAC tested by arm64 libFLAC;
# 2. the package DEB: `apt-get install ./…deb` (its Recommends from the
#    mirror), the installed doctor and a conversion, `apt-get purge`, and
#    nothing of it left.
set -euo pipefail
binary=$1 deb=$2 samples=$3 out=$4

fail() { echo "error (arm64 trixie root): $*" >&2; exit 1; }
say() { echo "--> arm64: $*"; }

# What the root's tools are, asked directly, to hold doctor's report against.
ffmpeg_release=$(ffmpeg -version | sed -n '1s/^ffmpeg version \([0-9.]*\).*/\1/p')
flac_release=$(flac --version | sed -n 's/^flac \([0-9.]*\).*/\1/p')
if flac --help 2>&1 | grep -q -- '--threads='; then flac_threads=yes; else flac_threads=no; fi

# doctor prints the releases and flac's threads as the tools say them.
check_doctor() {
    local report=$1
    grep -qF "versions: FFmpeg $ffmpeg_release, libFLAC $flac_release" "$report" \
        || fail "doctor does not report FFmpeg $ffmpeg_release and libFLAC $flac_release: $(cat "$report")"
    grep -qE "flac encoder threads \(flac -j\): $flac_threads" "$report" \
        || fail "doctor does not say flac threads: $flac_threads: $(cat "$report")"
}

say "$(uname -m), FFmpeg $ffmpeg_release, libFLAC $flac_release"
say "dtsflac doctor (the aarch64 release build)"
"$binary" doctor | tee "$out/doctor.txt" || fail "dtsflac doctor failed"
check_doctor "$out/doctor.txt"

# The streams by name: the folder also holds ~150 WAV masters, and under
# qemu each costs the scan an emulated ffprobe (over a second).
streams=("$samples"/*.dtshd)
say "dtsflac scan --json (${#streams[@]} streams)"
"$binary" scan --json "${streams[@]}" >"$out/scan.json" || fail "dtsflac scan failed"

say "dtsflac convert (${#streams[@]} streams)"
started=$SECONDS
"$binary" convert --output-dir "$out/flac" "${streams[@]}" || fail "dtsflac convert failed"
echo "    converted in $((SECONDS - started)) s"
flac --silent --test "$out"/flac/*.flac || fail "arm64 libFLAC finds a converted FLAC damaged"

# What is named after dtsflac before the package comes (the runs above left
# root's own cache, ~/.cache/dtsflac, which no package purge removes).
find / -xdev -name '*dtsflac*' 2>/dev/null | sort >"$out/before-install.txt"

say "apt-get install $deb"
apt-get install -y -q "$deb" >"$out/apt-install.log" 2>&1 \
    || { tail -n 30 "$out/apt-install.log" >&2; fail "apt-get install $deb failed"; }
dpkg-query -W -f='${Status}\n' dtsflac | grep -qx 'install ok installed' || fail "dtsflac is not installed"
for recommended in exfat-fuse ntfs-3g fusefat; do
    dpkg-query -W -f='${Status}\n' "$recommended" 2>/dev/null | grep -qx 'install ok installed' \
        || fail "the recommended $recommended was not installed from the mirror"
done
dpkg-query -W -f='${Conffiles}\n' dtsflac | grep -q '^ /etc/dtsflac/dtsflac.toml ' \
    || fail "/etc/dtsflac/dtsflac.toml is not a conffile"
[[ -x /usr/bin/dtsflac && -f /usr/lib/systemd/system/dtsflac.service ]] || fail "binary or unit missing"
[[ $(stat -c %a /var/lib/dtsflac) == 700 && -d /media/dtsflac ]] || fail "state or mount folder missing"
# Not running systemd here, so postinst must not have enabled the service.
[[ ! -e /etc/systemd/system/multi-user.target.wants/dtsflac.service ]] || fail "enabled without systemd"
dpkg -L dtsflac >"$out/package-files.txt"

say "the installed dtsflac: doctor, convert"
/usr/bin/dtsflac doctor >"$out/installed-doctor.txt" || { cat "$out/installed-doctor.txt"; fail "installed dtsflac doctor failed"; }
check_doctor "$out/installed-doctor.txt"
/usr/bin/dtsflac convert --output-dir "$out/installed" "$samples/xll_71_24_48_768_0.dtshd" \
    || fail "the installed dtsflac could not convert"
# The same PCM as the first conversion (which the host checks bit for bit).
[[ $(metaflac --show-md5sum "$out/installed/xll_71_24_48_768_0.flac") == \
   "$(metaflac --show-md5sum "$out/flac/xll_71_24_48_768_0.flac")" ]] \
    || fail "the installed dtsflac decoded xll_71_24_48_768_0 differently"

say "apt-get purge dtsflac"
apt-get purge -y -q dtsflac >"$out/apt-purge.log" 2>&1 \
    || { tail -n 30 "$out/apt-purge.log" >&2; fail "apt-get purge dtsflac failed"; }
if dpkg-query -W -f='${Status}\n' dtsflac 2>/dev/null | grep -qv '^unknown ok not-installed$\|^$'; then
    fail "dpkg still knows dtsflac after purge: $(dpkg-query -W -f='${Status}' dtsflac)"
fi
left=()
while read -r path; do
    # Folders such as /usr/bin are shared; every file of the package must go.
    if [[ -e $path && ! -d $path ]] || [[ -L $path ]]; then left+=("$path"); fi
done <"$out/package-files.txt"
# Anything else named after it that was not there before: the state, mount
# and config folders, the enablement link, dpkg's own records (-xdev: not
# the bound repo or /tmp).
while read -r path; do left+=("$path"); done < <(find / -xdev -name '*dtsflac*' 2>/dev/null \
    | sort | comm -13 "$out/before-install.txt" -)
[[ ${#left[@]} -eq 0 ]] || fail "left behind after purge: ${left[*]}"
say "purged, nothing left"
