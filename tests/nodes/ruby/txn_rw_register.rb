#!/usr/bin/env ruby
# Maelstrom's txn-rw-register workload served by one node: the first node id holds the registers
# and runs each transaction whole under a lock; every other node forwards a client's transaction
# unchanged to it (src stays the client, so it answers the client directly). One copy, one
# order, each transaction atomic at one instant: strict serializable. A partition that cuts a
# node off from the first one leaves its clients without answers (timeouts, never wrong answers).
require_relative 'maelstrom'

node = Maelstrom::Node.new
registers = {}

node.on "txn" do |msg|
  primary = node.node_ids.first
  if node.node_id != primary
    node.forward! msg, primary
    next
  end
  done = node.synchronize do
    msg[:body][:txn].map do |f, k, v|
      if f == "r"
        [f, k, registers[k]]
      else
        registers[k] = v
        [f, k, v]
      end
    end
  end
  node.reply! msg, {type: "txn_ok", txn: done}
end

node.main!
