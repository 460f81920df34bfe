#!/usr/bin/env ruby
# An echo node with a latent bug: it tracks the longest payload seen in a table it never
# initializes, so on its 10th echo it hits nil and the Ruby process dies with NoMethodError (its
# exit status 1 and backtrace on stderr). A crash mid-run must make the test INVALID.
require_relative 'maelstrom'

node = Maelstrom::Node.new
count = 0
stats = nil
node.on "echo" do |msg|
  n = node.synchronize { count += 1 }
  stats[:longest] = msg[:body][:echo].to_s.size if n >= 10   # nil here: NoMethodError
  node.reply! msg, {type: "echo_ok", echo: msg[:body][:echo]}
end
node.main!
