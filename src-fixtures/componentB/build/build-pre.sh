#!/bin/bash
# The guide's example: copy test-build into componentB's dependency/ folder.
set -euo pipefail
pushd "$(dirname "$0")" > /dev/null
testPath=../test-build
testDestDir=../dependency/test-build
if [[ ! -d ${testDestDir} ]]; then
    mkdir -p ${testDestDir}
fi
cp -arf ${testPath}/. ${testDestDir}
popd > /dev/null
