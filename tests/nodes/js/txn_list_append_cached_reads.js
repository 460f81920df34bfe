#!/usr/bin/env node
// A WRONG txn-list-append node: txn_list_append.js with read-only transactions answered from the
// root this node last saw, without asking lin-kv. They miss appends that other nodes committed
// before they began: stale reads, which strict serializability forbids.
'use strict';
require('./txn_list_append').serve({cachedReads: true});
