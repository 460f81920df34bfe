#!/usr/bin/env ruby
# Maelstrom's g-set workload, a state-based grow-only set CRDT: every add goes into the local set
# at once, and every 200 ms the node sends its whole set to every other node, which merges it by
# union. Gossip that a partition drops is simply sent again next round, so once the network heals
# every node converges on every acknowledged element.
require 'set'
require_relative 'maelstrom'

GOSSIP_EVERY_S = 0.2

node = Maelstrom::Node.new
elements = Set.new

node.on "add" do |msg|
  node.synchronize { elements << msg[:body][:element] }
  node.reply! msg, {type: "add_ok"}
end

node.on "read" do |msg|
  value = node.synchronize { elements.to_a }
  node.reply! msg, {type: "read_ok", value: value}
end

node.on "replicate" do |msg|
  node.synchronize { elements.merge(msg[:body][:value]) }
end

node.every GOSSIP_EVERY_S do
  value = node.synchronize { elements.to_a }
  (node.node_ids - [node.node_id]).each do |peer|
    node.send! peer, {type: "replicate", value: value}
  end
end

node.main!
