#!/usr/bin/env ruby
# A WRONG txn-rw-register node, "highly available": every node runs transactions on its own copy
# of the registers at once, then tells the other nodes about its writes (fire and forget,
# last-writer-wins by Lamport timestamp). Reads see only what has reached this node: a
# transaction can miss writes that committed elsewhere before it began, and two nodes can both
# read the old value and overwrite each other: not serializable.
require_relative 'maelstrom'

node = Maelstrom::Node.new
registers = {}     # key -> [value, [lamport, node id]]
clock = 0

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
  node.reply! msg, {type: "txn_ok", txn: done}
  unless writes.empty?
    (node.node_ids - [node.node_id]).each do |peer|
      node.send! peer, {type: "replicate", writes: writes}
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
