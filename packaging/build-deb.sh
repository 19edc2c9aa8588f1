#!/usr/bin/env bash
# Builds connvault_<version>_<arch>.deb from release binaries (Swift runtime linked statically): `make install`
# into a staging root with Debian's paths, the control files and maintainer scripts of packaging/debian, then
# dpkg-deb. Called by `make deb`.
set -euo pipefail

version="" arch="" bin_dir="" output=""
while [ $# -gt 0 ]; do
    case "$1" in
        --version) version="$2"; shift 2 ;;
        --arch) arch="$2"; shift 2 ;;
        --bin-dir) bin_dir="$2"; shift 2 ;;
        --output) output="$2"; shift 2 ;;
        *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$version" ] && [ -n "$arch" ] && [ -n "$bin_dir" ] && [ -n "$output" ] || {
    echo "usage: build-deb.sh --version V --arch A --bin-dir DIR --output FILE.deb" >&2
    exit 2
}

repository="$(cd "$(dirname "$0")/.." && pwd)"
here="$repository/packaging/debian"
stage="$(mktemp -d /tmp/cvdeb-XXXXXX)"
trap 'rm -rf "$stage"' EXIT

# The binaries must need nothing at run time but what the control file depends on: libc6 (with libm, the loader
# and libgcc_s, which libc6 depends on), libsodium23, libsqlite3-0 and zlib1g (which dpkg pre-depends on, so every
# Debian system has it). No Swift runtime, no libstdc++.
allowed='^(libc\.so\.6|libm\.so\.6|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1|libgcc_s\.so\.1|libsodium\.so\.23|libsqlite3\.so\.0|libz\.so\.1)$'
for binary in connvaultd connvaultctl; do
    extra="$(objdump -p "$bin_dir/$binary" | awk '/NEEDED/ { print $2 }' | grep -Ev "$allowed" || true)"
    if [ -n "$extra" ]; then
        echo "build-deb.sh: $bin_dir/$binary needs $extra (build with make release: --static-swift-stdlib)" >&2
        exit 1
    fi
done

make -C "$repository" --no-print-directory install SKIP_BUILD=1 INSTALL_BIN="$bin_dir" DESTDIR="$stage" \
    PREFIX=/usr UNITDIR=/lib/systemd/system >/dev/null
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/connvaultd" \
    "$stage/usr/bin/connvaultctl"
gzip -9n "$stage/usr/share/man/man1/connvaultctl.1" "$stage/usr/share/man/man8/connvaultd.8"
# Completion files are sourced, not run: no interpreter line.
sed -i '1{/^#!/d}' "$stage/usr/share/bash-completion/completions/connvaultctl"

install -d "$stage/usr/share/doc/connvault" "$stage/usr/share/lintian/overrides" "$stage/DEBIAN"
install -m 0644 "$here/copyright" "$stage/usr/share/doc/connvault/copyright"
install -m 0644 "$here/lintian-overrides" "$stage/usr/share/lintian/overrides/connvault"
sed "s/@VERSION@/$version/; s/@DATE@/$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git -C "$repository" log -1 --format=%ct 2>/dev/null || date +%s)}")/" \
    "$here/changelog" | gzip -9n > "$stage/usr/share/doc/connvault/changelog.gz"
chmod 0644 "$stage/usr/share/doc/connvault/changelog.gz"

size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
sed "s/@VERSION@/$version/; s/@ARCH@/$arch/; s/@SIZE@/$size/" "$here/control" > "$stage/DEBIAN/control"
for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$stage/DEBIAN/$script"
done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/control"
find "$stage" -type d -exec chmod 0755 {} +

dpkg-deb --root-owner-group -Zxz --build "$stage" "$output" >/dev/null
echo "built $output ($(du -h "$output" | cut -f1))"
