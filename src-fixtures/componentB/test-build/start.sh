#!/bin/sh
cat /usr/local/componentA/generated/version.txt
echo "componentB test-build"
