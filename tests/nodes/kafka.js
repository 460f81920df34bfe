#!/usr/bin/env node
// A minimal Maelstrom kafka node written outside splitbrain (JavaScript, no dependencies).
// n1 holds every log and the committed offsets and serializes every request; the other nodes
// forward to it (maelstrom-node.js), so the logs have one order while n1 is reachable. The logs
// live in memory: a killed n1 forgets them (acknowledged messages are lost).
// Usage: kafka.js [local]   (local: every node serves clients from its own logs and never
// forwards, i.e. no replication at all: offsets collide and nodes miss each other's messages).
'use strict';
const {serve} = require('./maelstrom-node');

const local = process.argv.includes('local');
const logs = new Map();        // key -> array of messages; a message's offset is its index
const committed = new Map();   // key -> committed offset

function apply(body) {
  switch (body.type) {
    case 'send': {
      if (!logs.has(body.key)) logs.set(body.key, []);
      const log = logs.get(body.key);
      log.push(body.msg);
      return {type: 'send_ok', offset: log.length - 1};
    }
    case 'poll': {
      const msgs = {};
      for (const [key, from] of Object.entries(body.offsets || {})) {
        const log = logs.get(key) || [];
        const pairs = [];
        for (let o = Math.max(0, from); o < log.length; o++) pairs.push([o, log[o]]);
        if (pairs.length) msgs[key] = pairs;
      }
      return {type: 'poll_ok', msgs};
    }
    case 'commit_offsets':
      for (const [key, o] of Object.entries(body.offsets || {})) {
        committed.set(key, Math.max(committed.get(key) ?? -1, o));
      }
      return {type: 'commit_offsets_ok'};
    case 'list_committed_offsets': {
      const offsets = {};
      for (const key of body.keys || []) {
        if (committed.has(key)) offsets[key] = committed.get(key);
      }
      return {type: 'list_committed_offsets_ok', offsets};
    }
    default:
      return {type: 'error', code: 10, text: 'unsupported ' + body.type};
  }
}

serve({apply, local: () => local, banner: local ? ' (local logs: no replication)' : ''});
