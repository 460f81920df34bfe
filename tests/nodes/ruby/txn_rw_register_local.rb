#!/usr/bin/env ruby
# A WRONG txn-rw-register node, "highly available": every node runs transactions on its own copy
# of the registers at once, and ships its writes to the other nodes in the background (a batch
# every 250 ms, fire and forget, last-writer-wins by Lamport timestamp). Reads see only what has
# reached this node: two nodes both read the old value of a register and both overwrite it (a
# lost update), and a transaction misses writes that committed elsewhere before it began.
require_relative 'maelstrom'

node = Maelstrom::Node.new
registers = {}     # key -> [value, [lamport, node id]]
clock = 0
outbox = []        # writes not shipped yet
SHIP_EVERY_S = 0.25

apply = lambda do |k, v, stamp|
  cur = registers[k]
  registers[k] = [v, stamp] if cur.nil? || (cur[1] <=> stamp) < 0
end

node.on "txn" do |msg|
  writes = []
  done = node.synchronize do
    msg[:body][:txn].map do |f, k, v|
      if f == "r"
        [f, k, registers[k]&.first]
      else
        clock += 1
        stamp = [clock, node.node_id]
        apply.call(k, v, stamp)
        writes << [k, v, stamp]
        [f, k, v]
      end
    end
  end
  node.synchronize { outbox.concat(writes) }
  node.reply! msg, {type: "txn_ok", txn: done}
end

node.every SHIP_EVERY_S do
  batch = node.synchronize { b = outbox; outbox = []; b }
  unless batch.empty?
    (node.node_ids - [node.node_id]).each do |peer|
      node.send! peer, {type: "replicate", writes: batch}
    end
  end
end

node.on "replicate" do |msg|
  node.synchronize do
    msg[:body][:writes].each do |k, v, stamp|
      clock = [clock, stamp[0]].max
      apply.call(k, v, stamp)
    end
  end
end

node.main!
