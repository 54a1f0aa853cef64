#!/bin/sh
cat "$GREETING_FILE"
cat /app/shout.txt /app/built.txt
echo "running as $(id -un) in $(pwd)"
