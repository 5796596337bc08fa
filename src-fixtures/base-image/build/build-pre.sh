#!/bin/bash
# The base image is built FROM scratch: bring in the static busybox binary
# (Debian's busybox-static), so nothing is ever pulled from a registry.
set -euo pipefail
pushd "$(dirname "$0")" > /dev/null
mkdir -p ../generated
cp /bin/busybox ../generated/busybox
popd > /dev/null
