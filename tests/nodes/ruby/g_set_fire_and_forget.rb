#!/usr/bin/env ruby
# A WRONG g-set: each add is sent to the other nodes once, as it happens, with no
# acknowledgement, retry or anti-entropy. It works on a perfect network; an add whose gossip a
# partition drops never reaches the nodes on the other side, and the final reads there lack an
# acknowledged element (Maelstrom: "lost").
require 'set'
require_relative 'maelstrom'

node = Maelstrom::Node.new
elements = Set.new

node.on "add" do |msg|
  e = msg[:body][:element]
  node.synchronize { elements << e }
  (node.node_ids - [node.node_id]).each do |peer|
    node.send! peer, {type: "replicate", value: [e]}
  end
  node.reply! msg, {type: "add_ok"}
end

node.on "read" do |msg|
  value = node.synchronize { elements.to_a }
  node.reply! msg, {type: "read_ok", value: value}
end

node.on "replicate" do |msg|
  node.synchronize { elements.merge(msg[:body][:value]) }
end

node.main!
