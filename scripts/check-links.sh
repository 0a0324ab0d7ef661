#!/usr/bin/env bash
# The Lambda functions run on the OS-only runtime (provided.al2023), whose image is known to carry glibc and
# little else: a function binary may link glibc's libraries and the loader only. Everything else (OpenSSL,
# zlib: librdkafka's TLS and compression) is built in (the workspace's rdkafka features `ssl-vendored`,
# `libz-static`). scripts/test.sh runs this on the functions' binaries, and on the ether-cattle binary to see it
# fail (it links libstdc++ for RocksDB).
#
#   scripts/check-links.sh BINARY...
set -euo pipefail
[ "$#" -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
ALLOWED='^(libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|ld-linux-x86-64\.so\.2|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1)$'
status=0
for bin in "$@"; do
  [ -f "$bin" ] || { echo "check-links: $bin is missing" >&2; exit 1; }
  needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  [ -n "$needed" ] || { echo "check-links: $bin names no shared library (not a dynamic ELF?)" >&2; exit 1; }
  for lib in $needed; do
    if ! [[ $lib =~ $ALLOWED ]]; then
      echo "check-links: $bin links $lib, which the Lambda runtime image does not carry" >&2
      status=1
    fi
  done
done
[ "$status" = 0 ] && echo "check-links: $# binaries link glibc only"
exit "$status"
