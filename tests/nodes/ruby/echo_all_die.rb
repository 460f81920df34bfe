#!/usr/bin/env ruby
# An echo node whose every process exits one second after init (a "self-update" that restarts
# nothing): the whole cluster is gone early in the run. No run may end VALID like that.
require_relative 'maelstrom'

node = Maelstrom::Node.new
node.on_init do
  Thread.new do
    sleep 1
    node.log "restarting to apply an update"
    exit! 3
  end
end
node.on "echo" do |msg|
  node.reply! msg, {type: "echo_ok", echo: msg[:body][:echo]}
end
node.main!
