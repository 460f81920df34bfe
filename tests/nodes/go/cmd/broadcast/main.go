// Maelstrom's broadcast workload, done the way the Gossip Glomers challenge 3e asks: a message
// is stored, acknowledged, and gossiped along the topology Maelstrom sends (every other node when
// none came). Gossip is acknowledged per message: each neighbour has an outbox of messages it has
// not acknowledged yet; a new message goes out at once, and every RetryInterval the whole outbox
// goes again in one batch, so what a partition drops arrives after it heals.
package main

import (
	"encoding/json"
	"log"
	"sync"
	"time"

	"splitbrain.test/nodes/maelstrom"
)

// RetryInterval is how long a neighbour has to acknowledge before its outbox is sent again.
const RetryInterval = 400 * time.Millisecond

type server struct {
	n         *maelstrom.Node
	mu        sync.Mutex
	seen      map[float64]bool
	order     []float64
	neighbors []string
	outbox    map[string]map[float64]bool
}

func (s *server) setNeighbors(ns []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.neighbors = ns
	for _, p := range ns {
		if s.outbox[p] == nil {
			s.outbox[p] = map[float64]bool{}
		}
	}
}

// add stores messages; the new ones are queued for every neighbour but `from`.
func (s *server) add(msgs []float64, from string) map[string][]float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	fresh := map[string][]float64{}
	for _, m := range msgs {
		if s.seen[m] {
			continue
		}
		s.seen[m] = true
		s.order = append(s.order, m)
		for _, p := range s.neighbors {
			if p != from {
				s.outbox[p][m] = true
				fresh[p] = append(fresh[p], m)
			}
		}
	}
	return fresh
}

func (s *server) gossip(batches map[string][]float64) {
	for p, ms := range batches {
		s.n.Send(p, map[string]any{"type": "gossip", "messages": ms})
	}
}

func main() {
	n := maelstrom.NewNode()
	s := &server{n: n, seen: map[float64]bool{}, outbox: map[string]map[float64]bool{}}
	n.OnInit(func() {
		var others []string
		for _, id := range n.NodeIDs() {
			if id != n.ID() {
				others = append(others, id)
			}
		}
		s.setNeighbors(others)
		go func() {
			for range time.Tick(RetryInterval) {
				s.mu.Lock()
				batches := map[string][]float64{}
				for p, box := range s.outbox {
					for m := range box {
						batches[p] = append(batches[p], m)
					}
				}
				s.mu.Unlock()
				s.gossip(batches)
			}
		}()
	})
	n.Handle("topology", func(msg maelstrom.Message) error {
		var body struct {
			Topology map[string][]string `json:"topology"`
		}
		if err := json.Unmarshal(msg.Body, &body); err != nil {
			return err
		}
		if ns, ok := body.Topology[n.ID()]; ok {
			s.setNeighbors(ns)
		}
		return n.Reply(msg, map[string]any{"type": "topology_ok"})
	})
	n.Handle("broadcast", func(msg maelstrom.Message) error {
		var body struct {
			Message float64 `json:"message"`
		}
		if err := json.Unmarshal(msg.Body, &body); err != nil {
			return err
		}
		fresh := s.add([]float64{body.Message}, "")
		if err := n.Reply(msg, map[string]any{"type": "broadcast_ok"}); err != nil {
			return err
		}
		s.gossip(fresh)
		return nil
	})
	n.Handle("gossip", func(msg maelstrom.Message) error {
		var body struct {
			Messages []float64 `json:"messages"`
		}
		if err := json.Unmarshal(msg.Body, &body); err != nil {
			return err
		}
		fresh := s.add(body.Messages, msg.Src)
		n.Send(msg.Src, map[string]any{"type": "gossip_ok", "messages": body.Messages})
		s.gossip(fresh)
		return nil
	})
	n.Handle("gossip_ok", func(msg maelstrom.Message) error {
		var body struct {
			Messages []float64 `json:"messages"`
		}
		if err := json.Unmarshal(msg.Body, &body); err != nil {
			return err
		}
		s.mu.Lock()
		for _, m := range body.Messages {
			delete(s.outbox[msg.Src], m)
		}
		s.mu.Unlock()
		return nil
	})
	n.Handle("read", func(msg maelstrom.Message) error {
		s.mu.Lock()
		out := append([]float64{}, s.order...)
		s.mu.Unlock()
		return n.Reply(msg, map[string]any{"type": "read_ok", "messages": out})
	})
	if err := n.Run(); err != nil {
		log.Fatal(err)
	}
}
