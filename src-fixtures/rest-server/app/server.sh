#!/bin/sh
echo "rest-server"
