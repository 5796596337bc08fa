#!/bin/sh
echo "hello from componentA"
