#!/bin/sh
# The JavaScript kafka node with replication switched off (every node serves its own logs).
exec node "$(dirname "$0")/kafka.js" local
