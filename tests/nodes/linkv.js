#!/usr/bin/env node
// A minimal Maelstrom lin-kv node written outside splitbrain (JavaScript, no dependencies).
// n1 (the first node id) holds the map and serializes every request; the other nodes forward
// client requests to n1 and relay its replies, so the service is linearizable while n1 is
// reachable. Speaks Maelstrom's protocol: JSON lines on stdin/stdout, logs on stderr.
// Usage: linkv.js [--bug stale]   (--bug stale: non-primaries answer reads from a local copy
// that is never updated, i.e. stale reads a linearizability checker must catch).
'use strict';
const readline = require('readline');

const bug = process.argv.includes('stale');
let nodeId = null;
let nodeIds = [];
let nextId = 0;
const kv = new Map();
const waiting = new Map();   // my msg id to n1 -> {client, clientMsgId}

function send(dest, body) {
  process.stdout.write(JSON.stringify({src: nodeId, dest, body}) + '\n');
}

function reply(req, body) {
  send(req.src, Object.assign({in_reply_to: req.body.msg_id}, body));
}

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

const rl = readline.createInterface({input: process.stdin});
rl.on('line', (line) => {
  let msg;
  try { msg = JSON.parse(line); } catch (e) { console.error('bad json', line); return; }
  const body = msg.body;
  if (body.type === 'init') {
    nodeId = body.node_id;
    nodeIds = body.node_ids;
    console.error(`init ${nodeId} of ${nodeIds}`);
    reply(msg, {type: 'init_ok'});
    return;
  }
  const primary = nodeIds[0];
  if (body.type === 'fwd') {            // at the primary: a forwarded client request
    const res = apply(body.req);
    send(msg.src, Object.assign({type: 'fwd_ok', ref: body.ref}, {res}));
    return;
  }
  if (body.type === 'fwd_ok') {         // back at the forwarder
    const w = waiting.get(body.ref);
    if (!w) return;
    waiting.delete(body.ref);
    send(w.client, Object.assign({in_reply_to: w.clientMsgId}, body.res));
    return;
  }
  if (nodeId === primary) {
    reply(msg, apply(body));
  } else if (bug && body.type === 'read') {
    reply(msg, apply(body));            // the stale local copy
  } else {
    const ref = ++nextId;
    waiting.set(ref, {client: msg.src, clientMsgId: body.msg_id});
    send(primary, {type: 'fwd', ref, req: body});
  }
});
rl.on('close', () => process.exit(0));
