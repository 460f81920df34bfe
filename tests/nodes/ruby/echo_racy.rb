#!/usr/bin/env ruby
# A WRONG echo node: it keeps "the current request" in an instance variable shared by its handler
# threads (a tidy-looking refactor), pauses to "log", and then replies from that variable. Two
# echoes that overlap both answer with the later one's payload: the reply to the first request
# echoes somebody else's message.
require_relative 'maelstrom'

class EchoServer
  def initialize
    @node = Maelstrom::Node.new
    @node.on "echo" do |msg|
      @current = msg
      sleep 0.02      # "audit logging"
      @node.reply! msg, {type: "echo_ok", echo: @current[:body][:echo]}
    end
  end

  def run
    @node.main!
  end
end

EchoServer.new.run
