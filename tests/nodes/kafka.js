#!/usr/bin/env node
// A minimal Maelstrom kafka node written outside splitbrain (JavaScript, no dependencies).
// n1 (the first node id) holds every log and the committed offsets and serializes every request;
// the other nodes forward client requests to n1 and relay its replies, so the logs have one
// order while n1 is reachable (a forwarded request that is cut off simply gets no reply).
// Speaks Maelstrom's protocol: JSON lines on stdin/stdout, logs on stderr.
// Usage: kafka.js [local]   (local: every node serves clients from its own logs and never
// forwards, i.e. no replication at all: offsets collide and nodes miss each other's messages).
'use strict';
const readline = require('readline');

const local = process.argv.includes('local');
let nodeId = null;
let nodeIds = [];
let nextRef = 0;
const logs = new Map();        // key -> array of messages; a message's offset is its index
const committed = new Map();   // key -> committed offset
const waiting = new Map();     // ref of a forwarded request -> {client, clientMsgId}

function send(dest, body) {
  process.stdout.write(JSON.stringify({src: nodeId, dest, body}) + '\n');
}

function reply(req, body) {
  send(req.src, Object.assign({in_reply_to: req.body.msg_id}, body));
}

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

const rl = readline.createInterface({input: process.stdin});
rl.on('line', (line) => {
  let msg;
  try { msg = JSON.parse(line); } catch (e) { console.error('bad json', line); return; }
  const body = msg.body;
  if (body.type === 'init') {
    nodeId = body.node_id;
    nodeIds = body.node_ids;
    console.error(`init ${nodeId} of ${nodeIds}${local ? ' (local logs: no replication)' : ''}`);
    reply(msg, {type: 'init_ok'});
    return;
  }
  const primary = nodeIds[0];
  if (body.type === 'fwd') {            // at the primary: a forwarded client request
    send(msg.src, {type: 'fwd_ok', ref: body.ref, res: apply(body.req)});
    return;
  }
  if (body.type === 'fwd_ok') {         // back at the forwarder
    const w = waiting.get(body.ref);
    if (!w) return;
    waiting.delete(body.ref);
    send(w.client, Object.assign({in_reply_to: w.clientMsgId}, body.res));
    return;
  }
  if (local || nodeId === primary) {
    reply(msg, apply(body));
  } else {
    const ref = ++nextRef;
    waiting.set(ref, {client: msg.src, clientMsgId: body.msg_id});
    send(primary, {type: 'fwd', ref, req: body});
  }
});
rl.on('close', () => process.exit(0));
