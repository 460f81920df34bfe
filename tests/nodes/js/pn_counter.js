#!/usr/bin/env node
// Maelstrom's pn-counter workload as a state-based PN-counter CRDT: each node counts its own
// increments and decrements in its own slot ({node: [p, n]}), sends its whole state to every
// other node every 200 ms, and merges what it receives slot by slot with max. The value is the
// sum of p - n over all slots; lost gossip is repaired by the next round.
'use strict';
const {Node} = require('./maelstrom');

const GOSSIP_EVERY_MS = 200;
const node = new Node();
const slots = {};          // node id -> [increments, decrements]

function slot(id) { return (slots[id] = slots[id] || [0, 0]); }

node.on('add', (req) => {
  const d = req.body.delta;
  const s = slot(node.nodeId);
  if (d >= 0) s[0] += d; else s[1] -= d;
  node.reply(req, {type: 'add_ok'});
});

node.on('read', (req) => {
  let value = 0;
  for (const [p, n] of Object.values(slots)) value += p - n;
  node.reply(req, {type: 'read_ok', value});
});

node.on('replicate', (req) => {
  for (const [id, [p, n]] of Object.entries(req.body.slots)) {
    const s = slot(id);
    s[0] = Math.max(s[0], p);
    s[1] = Math.max(s[1], n);
  }
});

node.every(GOSSIP_EVERY_MS, () => {
  for (const peer of node.nodeIds) {
    if (peer !== node.nodeId) node.send(peer, {type: 'replicate', slots});
  }
});

node.run();
