#!/usr/bin/env node
// A minimal Maelstrom lin-kv node written outside splitbrain (JavaScript, no dependencies).
// n1 holds the map and serializes every request; the other nodes forward to it
// (maelstrom-node.js), so the service is linearizable while n1 is reachable.
// Usage: linkv.js [stale]   (stale: non-primaries answer reads from a local copy that is never
// updated, i.e. stale reads a linearizability checker must catch).
'use strict';
const {serve} = require('./maelstrom-node');

const stale = process.argv.includes('stale');
const kv = new Map();

function apply(body) {
  const key = JSON.stringify(body.key);
  switch (body.type) {
    case 'read':
      if (!kv.has(key)) return {type: 'error', code: 20, text: 'not found'};
      return {type: 'read_ok', value: kv.get(key)};
    case 'write':
      kv.set(key, body.value);
      return {type: 'write_ok'};
    case 'cas':
      if (!kv.has(key)) return {type: 'error', code: 20, text: 'not found'};
      if (kv.get(key) !== body.from) return {type: 'error', code: 22, text: 'mismatch'};
      kv.set(key, body.to);
      return {type: 'cas_ok'};
    default:
      return {type: 'error', code: 10, text: 'unsupported ' + body.type};
  }
}

serve({apply, local: (body) => stale && body.type === 'read'});
