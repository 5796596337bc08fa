#!/bin/sh
echo "watchdog $(cat /etc/watchdog-build)"
