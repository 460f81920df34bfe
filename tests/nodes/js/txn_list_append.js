#!/usr/bin/env node
// Maelstrom's txn-list-append workload, built like Maelstrom's "Datomic" tutorial: the whole
// database is ONE value in the lin-kv service, key "root" ({key: [elements]}). A transaction reads
// the root, runs its micro-ops on a copy, and installs the copy with compare-and-set; when
// another transaction got there first (code 22) it runs again on the new root. Read-only
// transactions need no cas: the linearizable read is their commit point. Every committed
// transaction is therefore atomic at one point in real time: strict serializable.
//
// txn_list_append_cached_reads.js is the WRONG variant: read-only transactions are answered from
// the root this node saw last, without asking lin-kv (stale reads).
'use strict';
const {Node, RPCError, RPCTimeout} = require('./maelstrom');

const KV = 'lin-kv';
const ROOT = 'root';
const CAS_ATTEMPTS_MAX = 100;

function serve({cachedReads = false} = {}) {
  const node = new Node();
  let cached = {};     // the wrong variant's idea of the root

  async function readRoot() {
    try {
      return (await node.rpc(KV, {type: 'read', key: ROOT})).value;
    } catch (e) {
      if (e instanceof RPCError && e.code === 20) return {};
      throw e;
    }
  }

  // Runs the micro-ops on a copy of `root`: [completed txn, new root, wrote?].
  function execute(root, txn) {
    const next = Object.assign({}, root);
    let wrote = false;
    const done = txn.map(([f, k, v]) => {
      const key = JSON.stringify(k);      // JSON object keys are strings; keep 1 and "1" apart
      if (f === 'r') return [f, k, next[key] === undefined ? null : next[key].slice()];
      next[key] = (next[key] || []).concat([v]);
      wrote = true;
      return [f, k, v];
    });
    return [done, next, wrote];
  }

  node.on('txn', async (req) => {
    const txn = req.body.txn;
    try {
      if (cachedReads && txn.every(([f]) => f === 'r')) {
        // THE BUG: "reads don't change anything, serve them locally".
        node.reply(req, {type: 'txn_ok', txn: execute(cached, txn)[0]});
        return;
      }
      for (let attempt = 0; attempt < CAS_ATTEMPTS_MAX; attempt++) {
        const root = await readRoot();
        const [done, next, wrote] = execute(root, txn);
        if (!wrote) {
          cached = root;
          node.reply(req, {type: 'txn_ok', txn: done});
          return;
        }
        try {
          await node.rpc(KV, {type: 'cas', key: ROOT, from: root, to: next,
                              create_if_not_exists: true});
        } catch (e) {
          if (e instanceof RPCError && (e.code === 22 || e.code === 20)) continue;
          throw e;
        }
        cached = next;
        node.reply(req, {type: 'txn_ok', txn: done});
        return;
      }
      // Every cas was refused: nothing was written, a definite abort.
      node.reply(req, {type: 'error', code: 30, text: 'too much contention on the root'});
    } catch (e) {
      if (e instanceof RPCTimeout) {   // the cas may have applied: indefinite
        node.reply(req, {type: 'error', code: 0, text: e.message});
        return;
      }
      throw e;
    }
  });
  node.run();
}

module.exports = {serve};
if (require.main === module) serve();
