// Package maelstrom is a small Maelstrom node library (standard library only), shaped like the
// Go library of Maelstrom's demo directory: register handlers by message type, then Run.
//
//	n := maelstrom.NewNode()
//	n.Handle("echo", func(msg maelstrom.Message) error {
//		var body map[string]any
//		json.Unmarshal(msg.Body, &body)
//		body["type"] = "echo_ok"
//		return n.Reply(msg, body)
//	})
//	if err := n.Run(); err != nil { log.Fatal(err) }
//
// Each message is handled on its own goroutine, so a handler may block in SyncRPC. As in
// Maelstrom's libraries, a message type without a handler is fatal: Run returns the error
// "No handler for <type>" and the program exits.
package maelstrom

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"sync"
)

// Message is one envelope; Body stays raw JSON until a handler decodes it.
type Message struct {
	Src  string          `json:"src"`
	Dest string          `json:"dest"`
	Body json.RawMessage `json:"body"`
}

// MessageBody holds the fields every body may carry.
type MessageBody struct {
	Type      string `json:"type"`
	MsgID     int    `json:"msg_id,omitempty"`
	InReplyTo int    `json:"in_reply_to,omitempty"`
	Code      int    `json:"code,omitempty"`
	Text      string `json:"text,omitempty"`
}

// RPCError is a Maelstrom error reply.
type RPCError struct {
	Code int
	Text string
}

func (e *RPCError) Error() string { return fmt.Sprintf("RPCError(%d, %q)", e.Code, e.Text) }

// Maelstrom's error codes used by the test nodes.
const (
	Timeout                = 0
	TemporarilyUnavailable = 11
	Crash                  = 13
	KeyDoesNotExist        = 20
	PreconditionFailed     = 22
)

// HandlerFunc handles one message.
type HandlerFunc func(msg Message) error

// Node is one Maelstrom node process.
type Node struct {
	mu        sync.Mutex
	outMu     sync.Mutex
	id        string
	nodeIDs   []string
	nextMsgID int
	handlers  map[string]HandlerFunc
	callbacks map[int]HandlerFunc
	initHooks []func()
	wg        sync.WaitGroup
	out       *bufio.Writer
}

// NewNode returns a node reading stdin and writing stdout.
func NewNode() *Node {
	return &Node{handlers: map[string]HandlerFunc{}, callbacks: map[int]HandlerFunc{},
		out: bufio.NewWriter(os.Stdout)}
}

// ID is this node's id ("n1"), known after init.
func (n *Node) ID() string { n.mu.Lock(); defer n.mu.Unlock(); return n.id }

// NodeIDs are all nodes' ids, known after init.
func (n *Node) NodeIDs() []string { n.mu.Lock(); defer n.mu.Unlock(); return n.nodeIDs }

// Handle registers the handler of a message type.
func (n *Node) Handle(typ string, fn HandlerFunc) {
	if _, ok := n.handlers[typ]; ok {
		panic("duplicate handler for " + typ)
	}
	n.handlers[typ] = fn
}

// OnInit runs fn once the node knows its id (before init_ok is sent).
func (n *Node) OnInit(fn func()) { n.initHooks = append(n.initHooks, fn) }

// Send sends a body to dest.
func (n *Node) Send(dest string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	line, err := json.Marshal(Message{Src: n.ID(), Dest: dest, Body: b})
	if err != nil {
		return err
	}
	n.outMu.Lock()
	defer n.outMu.Unlock()
	n.out.Write(line)
	n.out.WriteByte('\n')
	return n.out.Flush()
}

// Reply answers req with body (in_reply_to set from req's msg_id).
func (n *Node) Reply(req Message, body any) error {
	var rb MessageBody
	if err := json.Unmarshal(req.Body, &rb); err != nil {
		return err
	}
	m := toMap(body)
	m["in_reply_to"] = rb.MsgID
	return n.Send(req.Src, m)
}

// RPC sends a request; fn gets the reply when (if) it comes.
func (n *Node) RPC(dest string, body any, fn HandlerFunc) error {
	n.mu.Lock()
	n.nextMsgID++
	id := n.nextMsgID
	n.callbacks[id] = fn
	n.mu.Unlock()
	m := toMap(body)
	m["msg_id"] = id
	return n.Send(dest, m)
}

// SyncRPC sends a request and waits for its reply (an error reply is an *RPCError; a context
// deadline means the request may or may not have happened).
func (n *Node) SyncRPC(ctx context.Context, dest string, body any) (Message, error) {
	ch := make(chan Message, 1)
	n.mu.Lock()
	n.nextMsgID++
	id := n.nextMsgID
	n.callbacks[id] = func(m Message) error { ch <- m; return nil }
	n.mu.Unlock()
	m := toMap(body)
	m["msg_id"] = id
	if err := n.Send(dest, m); err != nil {
		return Message{}, err
	}
	select {
	case reply := <-ch:
		var rb MessageBody
		if err := json.Unmarshal(reply.Body, &rb); err != nil {
			return reply, err
		}
		if rb.Type == "error" {
			return reply, &RPCError{Code: rb.Code, Text: rb.Text}
		}
		return reply, nil
	case <-ctx.Done():
		n.mu.Lock()
		delete(n.callbacks, id)
		n.mu.Unlock()
		return Message{}, ctx.Err()
	}
}

// Run reads messages until stdin closes. It returns the first handler error, or
// "No handler for <type>" on a message no handler takes.
func (n *Node) Run() error {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<26)
	errs := make(chan error, 1)
	for scanner.Scan() {
		select {
		case err := <-errs:
			return err
		default:
		}
		var msg Message
		if err := json.Unmarshal(scanner.Bytes(), &msg); err != nil {
			return fmt.Errorf("unmarshal message: %w", err)
		}
		var body MessageBody
		if err := json.Unmarshal(msg.Body, &body); err != nil {
			return fmt.Errorf("unmarshal body: %w", err)
		}
		if body.InReplyTo != 0 {
			n.mu.Lock()
			fn := n.callbacks[body.InReplyTo]
			delete(n.callbacks, body.InReplyTo)
			n.mu.Unlock()
			if fn != nil {
				n.spawn(fn, msg, errs)
			}
			continue
		}
		if body.Type == "init" {
			if err := n.handleInit(msg); err != nil {
				return err
			}
			continue
		}
		fn, ok := n.handlers[body.Type]
		if !ok {
			return fmt.Errorf("No handler for %s", scanner.Text())
		}
		n.spawn(fn, msg, errs)
	}
	n.wg.Wait()
	return scanner.Err()
}

func (n *Node) spawn(fn HandlerFunc, msg Message, errs chan error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := fn(msg); err != nil {
			log.Printf("handler error: %v", err)
			select {
			case errs <- err:
			default:
			}
		}
	}()
}

func (n *Node) handleInit(msg Message) error {
	var body struct {
		NodeID  string   `json:"node_id"`
		NodeIDs []string `json:"node_ids"`
	}
	if err := json.Unmarshal(msg.Body, &body); err != nil {
		return fmt.Errorf("unmarshal init: %w", err)
	}
	n.mu.Lock()
	n.id, n.nodeIDs = body.NodeID, body.NodeIDs
	n.mu.Unlock()
	for _, fn := range n.initHooks {
		fn()
	}
	log.Printf("init %s of %v", body.NodeID, body.NodeIDs)
	return n.Reply(msg, map[string]any{"type": "init_ok"})
}

// Body decodes a message body into a map.
func Body(msg Message) map[string]any {
	var m map[string]any
	_ = json.Unmarshal(msg.Body, &m)
	return m
}

func toMap(body any) map[string]any {
	if m, ok := body.(map[string]any); ok {
		c := make(map[string]any, len(m)+1)
		for k, v := range m {
			c[k] = v
		}
		return c
	}
	b, _ := json.Marshal(body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}
