// Maelstrom's unique-ids workload: ids are "<node id>-<counter>", unique across the cluster
// without any coordination (each node owns its prefix), and available under any partition.
package main

import (
	"fmt"
	"log"
	"sync/atomic"

	"splitbrain.test/nodes/maelstrom"
)

func main() {
	n := maelstrom.NewNode()
	var counter int64
	n.Handle("generate", func(msg maelstrom.Message) error {
		id := fmt.Sprintf("%s-%d", n.ID(), atomic.AddInt64(&counter, 1))
		return n.Reply(msg, map[string]any{"type": "generate_ok", "id": id})
	})
	if err := n.Run(); err != nil {
		log.Fatal(err)
	}
}
