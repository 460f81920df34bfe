#!/usr/bin/env node
// A WRONG pn-counter: a single-node counter turned into a CRDT by adding gossip and merge-by-max,
// but every node still counts into the slot named "local" (the single-node code's name). The
// slots of different nodes collide: the merge keeps the largest one and the other nodes'
// increments vanish, so the final reads miss acknowledged adds.
'use strict';
const {Node} = require('./maelstrom');

const node = new Node();
const slots = {local: [0, 0]};

node.on('add', (req) => {
  const d = req.body.delta;
  if (d >= 0) slots.local[0] += d; else slots.local[1] -= d;
  node.reply(req, {type: 'add_ok'});
});

node.on('read', (req) => {
  let value = 0;
  for (const [p, n] of Object.values(slots)) value += p - n;
  node.reply(req, {type: 'read_ok', value});
});

node.on('replicate', (req) => {
  for (const [id, [p, n]] of Object.entries(req.body.slots)) {
    const s = (slots[id] = slots[id] || [0, 0]);
    s[0] = Math.max(s[0], p);
    s[1] = Math.max(s[1], n);
  }
});

node.every(200, () => {
  for (const peer of node.nodeIds) {
    if (peer !== node.nodeId) node.send(peer, {type: 'replicate', slots});
  }
});

node.run();
