# A small Maelstrom node library in plain Ruby (standard library only), in the manner of the
# Ruby node of Maelstrom's own demo directory:
#
#   node = Maelstrom::Node.new
#   node.on "echo" do |msg|
#     node.reply! msg, {type: "echo_ok", echo: msg[:body][:echo]}
#   end
#   node.main!
#
# Messages are hashes with symbol keys. Every handler runs on its own thread (so it may block in
# `sync_rpc!`); `synchronize { ... }` guards node state. Like Maelstrom's libraries, a message
# type with no handler is fatal: the node raises "No handler for <type>" and exits.
require 'json'
require 'monitor'

module Maelstrom
  # An error reply to an RPC, carrying Maelstrom's code.
  class RPCError < StandardError
    attr_reader :code
    def initialize(code, text)
      @code = code
      super("error #{code}: #{text}")
    end
  end

  # No reply in time: the request may or may not have happened.
  class RPCTimeout < StandardError; end

  class Node
    attr_reader :node_id, :node_ids

    def initialize
      @node_id = nil
      @node_ids = []
      @next_msg_id = 0
      @handlers = {}
      @callbacks = {}
      @init_hooks = []
      @periodic = []
      @lock = Monitor.new
      @out = Mutex.new
      on "init" do |msg|
        @node_id = msg[:body][:node_id]
        @node_ids = msg[:body][:node_ids]
        @init_hooks.each(&:call)
        log "init #{@node_id} of #{@node_ids.join(',')}"
        reply! msg, {type: "init_ok"}
        @periodic.each { |dt, task| start_periodic(dt, &task) }
      end
    end

    def on(type, &handler)
      raise "duplicate handler for #{type}" if @handlers.key?(type)
      @handlers[type] = handler
    end

    def on_init(&hook)
      @init_hooks << hook
    end

    # Run `task` every `dt` seconds once the node is initialized.
    def every(dt, &task)
      @periodic << [dt, task]
    end

    def synchronize(&block)
      @lock.synchronize(&block)
    end

    def log(text)
      @out.synchronize { STDERR.puts text; STDERR.flush }
    end

    def send!(dest, body)
      line = JSON.generate({src: @node_id, dest: dest, body: body})
      @out.synchronize { STDOUT.puts line; STDOUT.flush }
    end

    # Pass a message on UNCHANGED: its src stays the original sender (e.g. a client), so the node
    # that serves it answers that sender directly.
    def forward!(msg, dest)
      line = JSON.generate({src: msg[:src], dest: dest, body: msg[:body]})
      @out.synchronize { STDOUT.puts line; STDOUT.flush }
    end

    def reply!(req, body)
      send! req[:src], body.merge(in_reply_to: req[:body][:msg_id])
    end

    def new_msg_id
      @lock.synchronize { @next_msg_id += 1 }
    end

    # Send a request; the block gets the reply message when (if) it arrives.
    def rpc!(dest, body, &handler)
      id = new_msg_id
      @lock.synchronize { @callbacks[id] = handler }
      send! dest, body.merge(msg_id: id)
    end

    # Send a request and wait for the reply body. RPCError on an error reply, RPCTimeout when no
    # reply comes within `timeout` seconds.
    def sync_rpc!(dest, body, timeout: 1.0)
      q = Queue.new
      id = new_msg_id
      @lock.synchronize { @callbacks[id] = ->(m) { q << m } }
      send! dest, body.merge(msg_id: id)
      reply = q.pop(timeout: timeout)
      if reply.nil?
        @lock.synchronize { @callbacks.delete(id) }
        raise RPCTimeout, "#{body[:type]} to #{dest}"
      end
      rb = reply[:body]
      raise RPCError.new(rb[:code], rb[:text]) if rb[:type] == "error"
      rb
    end

    def main!
      Thread.abort_on_exception = true    # a bug in a handler kills the node, as it would
      STDOUT.sync = true
      while (line = STDIN.gets)
        msg = JSON.parse(line, symbolize_names: true)
        body = msg[:body]
        if body[:in_reply_to]
          cb = @lock.synchronize { @callbacks.delete(body[:in_reply_to]) }
          Thread.new(cb, msg) { |c, m| c.call(m) } if cb   # a `while` shares its variables
          next
        end
        handler = @handlers[body[:type]]
        raise "No handler for #{body[:type]}: #{line.strip}" if handler.nil?
        if body[:type] == "init"
          handler.call(msg)        # before any other message is handled
        else
          Thread.new(handler, msg) { |h, m| h.call(m) }
        end
      end
    end

    private

    def start_periodic(dt, &task)
      Thread.new do
        loop do
          sleep dt
          task.call
        end
      end
    end
  end
end
