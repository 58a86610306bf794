#!/usr/bin/env bash
# Re-vendors uPlot (the dashboard's chart library) into serving/static/dashboard/vendor from the npm
# registry package uplot: the minified browser build, its stylesheet and licence. Needs npm and network
# access to the registry.
#   serving/static/fetch_uplot.sh                      # the pinned version
#   UPLOT_VERSION=1.6.33 serving/static/fetch_uplot.sh  # another one (no integrity pin: check it, then pin it here)
set -euo pipefail
VERSION="${UPLOT_VERSION:-1.6.32}"
# sha512 integrity of uplot-1.6.32.tgz as published (npm view uplot@1.6.32 dist.integrity).
INTEGRITY_1_6_32="sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="

here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/dashboard/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "uplot@$VERSION" >/dev/null)
tarball="$work/uplot-$VERSION.tgz"
if [ "$VERSION" = "1.6.32" ]; then
  actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  [ "$actual" = "$INTEGRITY_1_6_32" ] || { echo "integrity mismatch for $tarball: $actual" >&2; exit 1; }
fi
tar -xzf "$tarball" -C "$work"

rm -rf "$dest"
mkdir -p "$dest"
cp "$work/package/dist/uPlot.iife.min.js" "$dest/uPlot.iife.min.js"
cp "$work/package/dist/uPlot.min.css" "$dest/uPlot.min.css"
cp "$work/package/LICENSE" "$dest/LICENSE"
echo "$VERSION" > "$dest/VERSION"
echo "uplot $VERSION -> $dest (4 files)"
