#!/bin/bash
# builds hadoop in a throw-away container and leaves the tarball in generated/
pushd $(dirname "$0") > /dev/null
mkdir -p ../generated
popd > /dev/null
