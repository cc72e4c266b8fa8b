#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Acceptance: the Debian packages install into a clean root and the installed executable finds
# every bundled plugin.
#   1. cpack builds synergos_<v>_<arch>.deb and synergos-sdk-dev_<v>_<arch>.deb from the build
#      tree (nothing is rebuilt: cpack installs what is built).
#   2. Package metadata: Depends is runtime-deps.txt; every library the executable and plugins
#      link directly comes from a package in it; configs are conffiles in /etc/synergos; the
#      systemd units are in /usr/lib/systemd/system; nothing lands in /usr/etc.
#   3. dpkg --root installs both packages into an empty root (libraries come from the host).
#   4. <root>/usr/bin/synergos --version, and `plugins --format json` lists every
#      libsynergos-*.so of <build>/plugins, from <root>/usr/lib/synergos/plugins, with no errors.
#   5. Every installed config passes the installed `synergos check-config`.
#   6. systemd-analyze verify accepts the installed units.
#   7. The Docker image's layout (Runtime component installed under /opt/synergos) finds its
#      plugins the same way.
# Usage: deb_install_test.sh CMAKE CPACK BUILD_DIR SOURCE_DIR WORK_DIR VERSION
set -euo pipefail
[ $# -eq 6 ] || { echo "usage: $0 CMAKE CPACK BUILD_DIR SOURCE_DIR WORK_DIR VERSION" >&2; exit 2; }
cmake_bin="$1" cpack_bin="$2" build="$3" source="$4" work="$5" version="$6"

failures=0
ok() { echo "ok   $*"; }
bad() {
    echo "FAIL $*" >&2
    failures=$((failures + 1))
}
die() {
    echo "FAIL $*" >&2
    exit 1
}
# The installed executable must find plugins by its own location, not through the environment.
unset SYNERGOS_PLUGIN_PATH

rm -rf "$work"
mkdir -p "$work/packages" "$work/root"

# ---- 1. packages --------------------------------------------------------------------------------
if ! timeout 600 "$cpack_bin" --config "$build/CPackConfig.cmake" -B "$work/packages" \
    >"$work/cpack.log" 2>&1; then
    cat "$work/cpack.log" >&2
    die "cpack failed (log above)"
fi
shopt -s nullglob
runtime_debs=("$work/packages/synergos_${version}_"*.deb)
sdk_debs=("$work/packages/synergos-sdk-dev_${version}_"*.deb)
shopt -u nullglob
[ ${#runtime_debs[@]} -eq 1 ] ||
    die "expected one synergos_${version}_*.deb in $work/packages: $(ls "$work/packages")"
[ ${#sdk_debs[@]} -eq 1 ] ||
    die "expected one synergos-sdk-dev_${version}_*.deb in $work/packages: $(ls "$work/packages")"
runtime_deb="${runtime_debs[0]}"
sdk_deb="${sdk_debs[0]}"
ok "cpack made $(basename "$runtime_deb") and $(basename "$sdk_deb")"

# ---- 2. metadata --------------------------------------------------------------------------------
mapfile -t listed < <(sed -e 's/#.*//' -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' -e '/^$/d' \
    "$source/packaging/runtime-deps.txt")
expected_depends="$(printf '%s, ' "${listed[@]}")"
expected_depends="${expected_depends%, }"
depends="$(dpkg-deb -f "$runtime_deb" Depends)"
if [ "$depends" = "$expected_depends" ]; then
    ok "Depends is packaging/runtime-deps.txt ($depends)"
else
    bad "Depends '$depends' differs from packaging/runtime-deps.txt '$expected_depends'"
fi
listed_names=" $(printf '%s ' "${listed[@]}" | sed 's/([^)]*)//g' | tr -s ' ') "

contents="$(dpkg-deb -c "$runtime_deb" | awk '{print $6}' | sed 's|^\./|/|')"
if grep -q '^/usr/etc' <<<"$contents"; then
    bad "the runtime package installs into /usr/etc"
fi
for unit in synergos-director.service synergos-ttp@.service synergos-worker@.service; do
    if grep -qx "/usr/lib/systemd/system/$unit" <<<"$contents"; then
        ok "unit /usr/lib/systemd/system/$unit"
    else
        bad "the runtime package lacks /usr/lib/systemd/system/$unit"
    fi
done
dpkg-deb -e "$runtime_deb" "$work/control"
for config in "$source"/configs/*.yaml; do
    name="/etc/synergos/$(basename "$config")"
    if grep -qx "$name" <<<"$contents" && grep -qx "$name" "$work/control/conffiles"; then
        ok "config $name is a conffile"
    else
        bad "$name is not installed as a conffile"
    fi
done
if [ -e "$work/control/postinst" ] || [ -e "$work/control/preinst" ]; then
    bad "maintainer scripts would run chrooted in an empty root: $(ls "$work/control")"
fi

# Every DT_NEEDED library of the built executable and plugins, resolved on this host, must
# belong to a package that runtime-deps.txt names (merged /usr: dpkg may record /lib paths).
owner_of() {
    local path="$1" alt
    dpkg-query -S "$path" 2>/dev/null | head -n1 | cut -d: -f1 && return 0
    case "$path" in
        /usr/*) alt="${path#/usr}" ;;
        *) alt="/usr$path" ;;
    esac
    dpkg-query -S "$alt" 2>/dev/null | head -n1 | cut -d: -f1
}
shopt -s nullglob
built_plugins=("$build"/plugins/libsynergos-*.so)
shopt -u nullglob
[ ${#built_plugins[@]} -gt 0 ] || die "no plugins in $build/plugins: build them first"
declare -A seen=()
ld_cache="$(ldconfig -p)"
for elf in "$build/bin/synergos" "${built_plugins[@]}"; do
    while read -r needed; do
        [ -n "${seen[$needed]:-}" ] && continue
        seen[$needed]=1
        path="$(awk -v l="$needed" '$1 == l { print $NF; exit }' <<<"$ld_cache")"
        if [ -z "$path" ]; then
            path="$(ldd "$elf" | awk -v l="$needed" '$1 == l { print $3 }')"
        fi
        if [ -z "$path" ]; then
            bad "$needed (needed by $(basename "$elf")) is not found on this host"
            continue
        fi
        package="$(owner_of "$(readlink -f "$path")" || true)"
        [ -n "$package" ] || package="$(owner_of "$path" || true)"
        if [ -z "$package" ]; then
            bad "$needed ($path) belongs to no Debian package"
        elif [[ "$listed_names" == *" $package "* ]]; then
            ok "$needed comes from $package (listed)"
        else
            bad "$needed (needed by $(basename "$elf")) comes from $package," \
                "which packaging/runtime-deps.txt lacks"
        fi
    done < <(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done

# ---- 3. install into an empty root ---------------------------------------------------------------
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
: >"$root/var/lib/dpkg/status"
: >"$root/var/lib/dpkg/available"
if ! dpkg --root="$root" --force-depends --force-not-root -i "$runtime_deb" "$sdk_deb" \
    >"$work/dpkg.log" 2>&1; then
    cat "$work/dpkg.log" >&2
    die "dpkg --root install failed (log above)"
fi
for package in synergos synergos-sdk-dev; do
    status="$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Status}' "$package" 2>&1 || true)"
    if [ "$status" = "install ok installed" ]; then
        ok "$package is installed in $root ($status)"
    else
        bad "$package in $root: '$status'"
    fi
done
for file in usr/include/synergos/sdk/plugin.hpp usr/include/synergos/sdk/export.hpp \
    usr/lib/cmake/SynergosSDK/SynergosSDKConfig.cmake \
    usr/lib/cmake/SynergosSDK/SynergosSDKConfigVersion.cmake \
    usr/lib/cmake/SynergosSDK/SynergosPlugin.cmake; do
    if [ -f "$root/$file" ]; then ok "sdk file /$file"; else bad "sdk file /$file missing"; fi
done

# ---- 4. the installed executable -----------------------------------------------------------------
exe="$root/usr/bin/synergos"
[ -x "$exe" ] || die "$exe is not installed"
version_line="$("$exe" --version)" || die "$exe --version failed"
if [[ "$version_line" == "synergos $version "* ]]; then
    ok "installed --version: $version_line"
else
    bad "installed --version printed '$version_line', expected 'synergos $version ...'"
fi

# check_listing EXE PLUGIN_DIR: `EXE plugins --format json` lists every built plugin from
# PLUGIN_DIR, and reports no errors.
check_listing() {
    local exe="$1" dir="$2" json
    if ! json="$("$exe" plugins --format json 2>"$work/plugins.err")"; then
        cat "$work/plugins.err" >&2
        bad "$exe plugins --format json failed"
        return
    fi
    python3 - "$dir" "$json" "${built_plugins[@]}" <<'EOF' || failures=$((failures + 1))
import json, os, sys
plugin_dir, listing, built = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
listed = {os.path.realpath(p["file"]): p for p in listing["plugins"]}
bad = 0
for errors in listing.get("errors", []):
    print(f"FAIL plugin error: {errors.get('file')}: {errors.get('message')}", file=sys.stderr)
    bad += 1
for so in built:
    want = os.path.realpath(os.path.join(plugin_dir, os.path.basename(so)))
    if want in listed:
        p = listed[want]
        print(f"ok   listed {p['kind']}/{p['name']} {p['version']} from {want}")
    else:
        print(f"FAIL {os.path.basename(so)} is not listed from {plugin_dir}", file=sys.stderr)
        bad += 1
for path in listed:
    if not path.startswith(os.path.realpath(plugin_dir) + os.sep):
        print(f"FAIL listed a plugin outside {plugin_dir}: {path}", file=sys.stderr)
        bad += 1
if len(listed) != len(built):
    print(f"FAIL {len(listed)} plugins listed, {len(built)} built", file=sys.stderr)
    bad += 1
sys.exit(1 if bad else 0)
EOF
}
check_listing "$exe" "$root/usr/lib/synergos/plugins"

# ---- 5. installed configs -----------------------------------------------------------------------
for config in "$root"/etc/synergos/*.yaml; do
    if out="$("$exe" check-config "$config" 2>&1)"; then
        ok "installed check-config $(basename "$config"): ${out//$'\n'/ | }"
    else
        bad "installed check-config $config: ${out//$'\n'/ | }"
    fi
done

# ---- 6. the installed units, as systemd reads them -----------------------------------------------
# systemd-analyze needs the targets the units refer to: borrow the host's unit folder.
if command -v systemd-analyze >/dev/null && [ -d /usr/lib/systemd/system ]; then
    cp -a /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
    for unit in synergos-director.service synergos-ttp@0.service \
        synergos-worker@hospital-a.service; do
        if out="$(timeout 60 systemd-analyze verify --root="$root" "$unit" 2>&1)" &&
            [ -z "$out" ]; then
            ok "systemd-analyze verify $unit"
        else
            bad "systemd-analyze verify $unit: ${out//$'\n'/ | }"
        fi
    done
else
    echo "SKIP systemd-analyze verify: systemd-analyze or /usr/lib/systemd/system missing"
fi

# ---- 7. the image layout (packaging/Dockerfile: cmake --install --prefix /opt/synergos) ----------
image="$work/image/opt/synergos"
if "$cmake_bin" --install "$build" --component Runtime --prefix "$image" --strip \
    >"$work/install.log" 2>&1; then
    check_listing "$image/bin/synergos" "$image/lib/synergos/plugins"
else
    cat "$work/install.log" >&2
    bad "cmake --install --component Runtime --prefix $image failed"
fi

if [ "$failures" -gt 0 ]; then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all package checks passed"
