#!/bin/sh
# The JavaScript lin-kv node with its stale-reads bug switched on (non-primaries read locally).
exec node "$(dirname "$0")/linkv.js" stale
