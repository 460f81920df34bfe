#!/usr/bin/env ruby
# Maelstrom's echo workload: reply with exactly what was sent.
require_relative 'maelstrom'

node = Maelstrom::Node.new
node.on "echo" do |msg|
  node.reply! msg, {type: "echo_ok", echo: msg[:body][:echo]}
end
node.main!
