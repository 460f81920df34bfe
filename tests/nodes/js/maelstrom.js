// A small Maelstrom node library for Node.js (no dependencies), in the style of the JavaScript
// demos of Maelstrom: handlers by message type, promises for RPCs.
//
//   const node = new Node();
//   node.on('echo', (req) => node.reply(req, {type: 'echo_ok', echo: req.body.echo}));
//   node.run();
//
// `await node.rpc(dest, body)` resolves with the reply body, rejects with an RPCError on an error
// reply and with an RPCTimeout when nothing comes back in time. `node.every(ms, fn)` runs fn
// periodically after init. A message type with no handler is logged and ignored (allowed for
// JavaScript by the brief; Maelstrom's Ruby and Go libraries exit).
'use strict';
const readline = require('readline');

class RPCError extends Error {
  constructor(code, text) { super(`error ${code}: ${text}`); this.code = code; }
}
class RPCTimeout extends Error {}

class Node {
  constructor() {
    this.nodeId = null;
    this.nodeIds = [];
    this.handlers = new Map();
    this.callbacks = new Map();   // msg_id -> {resolve, reject, timer}
    this.nextMsgId = 0;
    this.periodic = [];
  }

  on(type, fn) { this.handlers.set(type, fn); }
  every(ms, fn) { this.periodic.push([ms, fn]); }
  log(...args) { console.error(...args); }

  send(dest, body) {
    process.stdout.write(JSON.stringify({src: this.nodeId, dest, body}) + '\n');
  }

  reply(req, body) {
    this.send(req.src, Object.assign({}, body, {in_reply_to: req.body.msg_id}));
  }

  rpc(dest, body, timeoutMs = 1000) {
    const msgId = ++this.nextMsgId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.callbacks.delete(msgId);
        reject(new RPCTimeout(`${body.type} to ${dest}`));
      }, timeoutMs);
      this.callbacks.set(msgId, {resolve, reject, timer});
      this.send(dest, Object.assign({}, body, {msg_id: msgId}));
    });
  }

  handle(msg) {
    const body = msg.body;
    if (body.in_reply_to !== undefined) {
      const cb = this.callbacks.get(body.in_reply_to);
      if (!cb) return;
      this.callbacks.delete(body.in_reply_to);
      clearTimeout(cb.timer);
      if (body.type === 'error') cb.reject(new RPCError(body.code, body.text));
      else cb.resolve(body);
      return;
    }
    if (body.type === 'init') {
      this.nodeId = body.node_id;
      this.nodeIds = body.node_ids;
      this.log(`init ${this.nodeId} of ${this.nodeIds}`);
      this.reply(msg, {type: 'init_ok'});
      for (const [ms, fn] of this.periodic) setInterval(fn, ms);
      return;
    }
    const fn = this.handlers.get(body.type);
    if (!fn) { this.log(`ignoring message of type ${body.type}`); return; }
    Promise.resolve().then(() => fn(msg)).catch((e) => {
      this.log(`handler ${body.type} failed: ${e.stack || e}`);
      // Crash (13) is indefinite: the request may have taken effect.
      if (body.msg_id !== undefined) this.reply(msg, {type: 'error', code: 13, text: String(e)});
    });
  }

  run() {
    const rl = readline.createInterface({input: process.stdin});
    rl.on('line', (line) => {
      let msg;
      try { msg = JSON.parse(line); } catch (e) { this.log('bad json', line); return; }
      this.handle(msg);
    });
    rl.on('close', () => process.exit(0));
  }
}

module.exports = {Node, RPCError, RPCTimeout};
