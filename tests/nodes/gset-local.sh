#!/bin/sh
exec python3 "$(dirname "$0")/gset.py" local
