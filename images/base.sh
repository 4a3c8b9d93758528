#!/usr/bin/env bash
# A Debian bookworm base with Python 3.11, made with debootstrap and imported into buildah's local
# storage, for machines that reach Debian's package archive but no container registry. It stands in
# for the Dockerfiles' default base (python:3.11-slim-bookworm): Debian bookworm, python3.11 with venv,
# CA certificates. Run as root; needs debootstrap and buildah.
#
#   images/base.sh [IMAGE]          (default localhost/rerec-base:bookworm-python3.11)
#   REBUILD=1 images/base.sh        rebuild even when the image exists
#   DEBIAN_MIRROR=http://... images/base.sh
set -euo pipefail

IMAGE=${1:-localhost/rerec-base:bookworm-python3.11}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BUILDAH=(buildah --storage-driver vfs)
# debootstrap's resolver does not pick alternatives: python3.11-venv needs python3-distutils named.
PACKAGES=python3.11,python3.11-venv,python3-distutils,python3-lib2to3,python3,ca-certificates,netbase

for tool in debootstrap buildah; do
  command -v "$tool" >/dev/null || { echo "images/base.sh: $tool is missing. Fix: apt-get install -y buildah debootstrap" >&2; exit 2; }
done
if [ -z "${REBUILD:-}" ] && "${BUILDAH[@]}" inspect --type image "$IMAGE" >/dev/null 2>&1; then
  echo "images/base.sh: $IMAGE exists (REBUILD=1 to make it again)"
  exit 0
fi

work=$(mktemp -d /var/tmp/rerec-base.XXXXXX)
ctr=""
cleanup() { if [ -n "$ctr" ]; then "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true; fi; rm -rf "$work"; }
trap cleanup EXIT

root="$work/rootfs"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" "$root/debootstrap/debootstrap.log" >&2 2>/dev/null; exit 1; }
chroot "$root" python3.11 -c "import ensurepip, ssl, venv" # the venv and TLS the images need

# Lean: no package caches or lists, no docs but the copyright files, no man pages or translations.
# The container runtime provides /dev, /proc and /sys.
chroot "$root" dpkg-query -W -f '${Package}=${Version}\n' >"$work/packages.txt"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/var/cache/debconf/*-old \
       "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/dev/*
find "$root/usr/share/doc" -type f ! -name copyright -delete
find "$root/usr/share/doc" -type d -empty -delete
cp "$work/packages.txt" "$root/etc/rerec-base-packages.txt"

tar --numeric-owner -C "$root" -cf "$work/rootfs.tar" .
ctr=$("${BUILDAH[@]}" from scratch)
"${BUILDAH[@]}" add "$ctr" "$work/rootfs.tar" / >/dev/null
python_version=$(chroot "$root" python3.11 -c 'import platform; print(platform.python_version())')
"${BUILDAH[@]}" config \
  --env LANG=C.UTF-8 \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --cmd python3.11 \
  --label org.opencontainers.image.title=rerec-base \
  --label org.opencontainers.image.description="Debian bookworm (debootstrap minbase) with python3.11 $python_version" \
  --label org.opencontainers.image.base.name="debootstrap:bookworm" \
  --label io.rerec.debian-packages-sha256="$(sha256sum "$work/packages.txt" | cut -d' ' -f1)" \
  "$ctr"
"${BUILDAH[@]}" commit --rm "$ctr" "$IMAGE" >/dev/null
ctr=""
echo "images/base.sh: built $IMAGE (python $python_version, $(wc -l <"$work/packages.txt") Debian packages)"
