#!/bin/sh
exec python3 "$(dirname "$0")/unique_ids.py" local
