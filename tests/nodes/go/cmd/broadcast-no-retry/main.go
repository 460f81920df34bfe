// A WRONG broadcast node (Gossip Glomers challenge 3b solved and never revisited): a new message
// is sent once to each neighbour and forgotten. No acknowledgement, no retry: gossip that a
// partition drops is gone for good, so nodes on the far side never see messages that were
// acknowledged to the client (Maelstrom: "lost").
package main

import (
	"encoding/json"
	"log"
	"sync"

	"splitbrain.test/nodes/maelstrom"
)

func main() {
	n := maelstrom.NewNode()
	var mu sync.Mutex
	seen := map[float64]bool{}
	var order []float64
	var neighbors []string
	n.OnInit(func() {
		for _, id := range n.NodeIDs() {
			if id != n.ID() {
				neighbors = append(neighbors, id)
			}
		}
	})
	// store adds m; true if it was new.
	store := func(m float64) bool {
		mu.Lock()
		defer mu.Unlock()
		if seen[m] {
			return false
		}
		seen[m] = true
		order = append(order, m)
		return true
	}
	spread := func(m float64, except string) {
		mu.Lock()
		ns := append([]string{}, neighbors...)
		mu.Unlock()
		for _, p := range ns {
			if p != except {
				n.Send(p, map[string]any{"type": "broadcast", "message": m})
			}
		}
	}
	n.Handle("topology", func(msg maelstrom.Message) error {
		var body struct {
			Topology map[string][]string `json:"topology"`
		}
		if err := json.Unmarshal(msg.Body, &body); err != nil {
			return err
		}
		mu.Lock()
		if ns, ok := body.Topology[n.ID()]; ok {
			neighbors = ns
		}
		mu.Unlock()
		return n.Reply(msg, map[string]any{"type": "topology_ok"})
	})
	n.Handle("broadcast", func(msg maelstrom.Message) error {
		var body struct {
			Message float64 `json:"message"`
			MsgID   int     `json:"msg_id"`
		}
		if err := json.Unmarshal(msg.Body, &body); err != nil {
			return err
		}
		if store(body.Message) {
			spread(body.Message, msg.Src)
		}
		if body.MsgID != 0 { // a client's request (gossip between nodes carries no msg_id)
			return n.Reply(msg, map[string]any{"type": "broadcast_ok"})
		}
		return nil
	})
	n.Handle("read", func(msg maelstrom.Message) error {
		mu.Lock()
		out := append([]float64{}, order...)
		mu.Unlock()
		return n.Reply(msg, map[string]any{"type": "read_ok", "messages": out})
	})
	if err := n.Run(); err != nil {
		log.Fatal(err)
	}
}
