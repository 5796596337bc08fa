#!/bin/bash
# componentA ships no image; what it exposes to others goes to generated/.
set -euo pipefail
pushd "$(dirname "$0")" > /dev/null
mkdir -p ../generated
echo "componentA 1.0" > ../generated/version.txt
popd > /dev/null
