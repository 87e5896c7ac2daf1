#!/usr/bin/env bash
# Assemble the real-photo evaluation set from photos that installable packages ship.
#
#   infra/realset/build.sh [DEST]        (default DEST: .realset/ in the repository root)
#
# Sources (see infra/realset/SOURCES.md for every file and its licence):
#   - Debian package libdlib19.1: doc folder examples/faces (Flickr / PASCAL VOC snapshots and
#     press photos) and examples/johns (face chips of 5 people); fetched with `apt-get download`
#     and unpacked with `dpkg -x` (nothing is installed), or read from /usr/share/doc/libdlib19.1
#     where the package is already installed;
#   - public-domain photos committed in beardnet/assets/real_pd (US Navy portrait grace_hopper
#     from matplotlib's sample_data, NASA's astronaut from scikit-image's data).
# Writes DEST/dlib/faces/*.jpg, DEST/dlib/johns/<person>/*.jpg, DEST/pd/*, and copies
# infra/realset/labels.csv to DEST/labels.csv, so `beardnet eval --real DEST` finds everything.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${1:-$ROOT/.realset}"
DOC=/usr/share/doc/libdlib19.1/examples
mkdir -p "$DEST"
if [ ! -d "$DOC/faces" ]; then
    TMP="$(mktemp -d)"
    trap 'rm -rf "$TMP"' EXIT
    if ! (cd "$TMP" && apt-get download libdlib19.1 >/dev/null 2>&1); then
        apt-get update >/dev/null
        (cd "$TMP" && apt-get download libdlib19.1 >/dev/null)
    fi
    dpkg -x "$TMP"/libdlib19.1_*.deb "$TMP/x"
    DOC="$TMP/x/usr/share/doc/libdlib19.1/examples"
fi
mkdir -p "$DEST/dlib/faces" "$DEST/dlib/johns" "$DEST/pd"
cp "$DOC"/faces/*.jpg "$DEST/dlib/faces/"
cp -r "$DOC"/johns/. "$DEST/dlib/johns/"
cp "$DOC/LICENSE_FOR_EXAMPLE_PROGRAMS.txt" "$DEST/dlib/" 2>/dev/null || true
cp "$ROOT"/beardnet/assets/real_pd/*.jpg "$ROOT"/beardnet/assets/real_pd/*.png "$DEST/pd/"
cp "$ROOT/infra/realset/labels.csv" "$DEST/labels.csv"
cp "$ROOT/infra/realset/SOURCES.md" "$DEST/SOURCES.md"
n=$(find "$DEST" -type f \( -name '*.jpg' -o -name '*.png' \) | wc -l)
echo "real set: $n photos in $DEST (labels: $DEST/labels.csv)"
