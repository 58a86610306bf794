#!/usr/bin/env bash
# Re-vendors Swagger UI into serving/static/swagger-ui from the npm registry package swagger-ui-dist.
# Only the files /docs loads are kept (plus the licences). Needs npm and network access to the registry.
#   serving/static/fetch_swagger_ui.sh            # the pinned version
#   SWAGGER_UI_VERSION=5.35.0 serving/static/fetch_swagger_ui.sh
set -euo pipefail
VERSION="${SWAGGER_UI_VERSION:-5.35.0}"
# sha512 integrity of swagger-ui-dist-5.35.0.tgz as published (npm view swagger-ui-dist@5.35.0 dist.integrity).
INTEGRITY_5_35_0="sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ=="
FILES=(swagger-ui.css swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui-standalone-preset.js
       swagger-ui-standalone-preset.js.LICENSE.txt favicon-16x16.png favicon-32x32.png LICENSE NOTICE)

here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/swagger-ui"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null)
tarball="$work/swagger-ui-dist-$VERSION.tgz"
if [ "$VERSION" = "5.35.0" ]; then
  actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  [ "$actual" = "$INTEGRITY_5_35_0" ] || { echo "integrity mismatch for $tarball: $actual" >&2; exit 1; }
fi
tar -xzf "$tarball" -C "$work"

rm -rf "$dest"
mkdir -p "$dest"
for f in "${FILES[@]}"; do
  # Source maps are not shipped: drop the comment pointing at them (browsers would ask for them).
  if [[ "$f" == *.js || "$f" == *.css ]]; then
    sed -E '/^\/[\/*]# sourceMappingURL=.*$/d' "$work/package/$f" > "$dest/$f"
  else
    cp "$work/package/$f" "$dest/$f"
  fi
done
echo "$VERSION" > "$dest/VERSION"
echo "swagger-ui-dist $VERSION -> $dest (${#FILES[@]} files)"
