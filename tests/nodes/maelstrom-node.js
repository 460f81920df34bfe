// The plumbing the JavaScript test nodes share (no dependencies): Maelstrom's protocol (JSON
// lines on stdin/stdout, logs on stderr) and one way to serve clients: n1 (the first node id)
// applies every request to its state in arrival order, the other nodes forward client requests
// to n1 and relay its replies, so the service has one order while n1 is reachable (a forwarded
// request that is cut off simply gets no reply: the client times out).
'use strict';
const readline = require('readline');

// apply(body) -> reply body: the service's state machine, run at n1.
// local(body) -> true when this node should apply `body` itself instead of forwarding it
// (the nodes' bug switches). banner: appended to the node's first log line.
function serve({apply, local = () => false, banner = ''}) {
  let nodeId = null;
  let nodeIds = [];
  let nextRef = 0;
  const waiting = new Map();   // ref of a forwarded request -> {client, clientMsgId}

  const send = (dest, body) =>
    process.stdout.write(JSON.stringify({src: nodeId, dest, body}) + '\n');
  const reply = (req, body) => send(req.src, Object.assign({in_reply_to: req.body.msg_id}, body));

  const rl = readline.createInterface({input: process.stdin});
  rl.on('line', (line) => {
    let msg;
    try { msg = JSON.parse(line); } catch (e) { console.error('bad json', line); return; }
    const body = msg.body;
    if (body.type === 'init') {
      nodeId = body.node_id;
      nodeIds = body.node_ids;
      console.error(`init ${nodeId} of ${nodeIds}${banner}`);
      reply(msg, {type: 'init_ok'});
      return;
    }
    if (body.type === 'fwd') {            // at n1: a forwarded client request
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
    if (nodeId === nodeIds[0] || local(body)) {
      reply(msg, apply(body));
    } else {
      const ref = ++nextRef;
      waiting.set(ref, {client: msg.src, clientMsgId: body.msg_id});
      send(nodeIds[0], {type: 'fwd', ref, req: body});
    }
  });
  rl.on('close', () => process.exit(0));
}

module.exports = {serve};
