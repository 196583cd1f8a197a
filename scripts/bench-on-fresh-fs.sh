#!/usr/bin/env bash
# Run `npm run bench` on a freshly made ext4 filesystem (a loop-mounted image), so that figures do not depend
# on what was created and deleted on the machine's own disk before the run. Needs root (mkfs, mount).
#
#   scripts/bench-on-fresh-fs.sh                 ext4 with a journal, as a file-transfer host would have
#   scripts/bench-on-fresh-fs.sh --no-journal    ext4 without a journal, like some VM images' root filesystem
#   scripts/bench-on-fresh-fs.sh --floor         bench/durable-floor.ts instead (combines with --no-journal)
#   scripts/bench-on-fresh-fs.sh --batch-floor   bench/batch-floor.ts instead (combines with --no-journal)
#
# BENCH_* variables (see bench/pipeline.ts) pass through. The image (8 GiB, sparse) lives in a temporary
# directory under $BENCH_IMAGE_DIR (default /var/tmp) and is removed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

features=()
bench=pipeline
for option in "$@"; do
  case "$option" in
    --no-journal) features=(-O ^has_journal) ;;
    --floor) bench=durable-floor ;;
    --batch-floor) bench=batch-floor ;;
    *) echo "usage: $0 [--no-journal] [--floor | --batch-floor]" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "$0: needs root to make and mount a filesystem" >&2
  exit 2
fi

work=$(mktemp -d "${BENCH_IMAGE_DIR:-/var/tmp}/shuttle-bench-fs.XXXXXX")
mountpoint="$work/mnt"
cleanup() {
  mountpoint -q "$mountpoint" && umount "$mountpoint"
  rm -rf "$work"
}
trap cleanup EXIT

truncate -s 8G "$work/image"
mkfs.ext4 -q -F "${features[@]}" "$work/image"
mkdir "$mountpoint"
mount -o loop "$work/image" "$mountpoint"
chmod 1777 "$mountpoint"

npm run --silent build
# The floors' thread pool as the daemon's (bin/shuttle.js); the daemon sets its own.
TMPDIR="$mountpoint" UV_THREADPOOL_SIZE="${UV_THREADPOOL_SIZE:-16}" node "dist/bench/$bench.js"
