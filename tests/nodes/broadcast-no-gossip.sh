#!/bin/sh
exec python3 "$(dirname "$0")/broadcast.py" no-gossip
