// A WRONG unique-ids node: a per-process counter with no node prefix. Each node alone never
// repeats itself, but every node starts at 1, so two nodes hand out the same ids.
package main

import (
	"log"
	"sync/atomic"

	"splitbrain.test/nodes/maelstrom"
)

func main() {
	n := maelstrom.NewNode()
	var counter int64
	n.Handle("generate", func(msg maelstrom.Message) error {
		return n.Reply(msg, map[string]any{"type": "generate_ok",
			"id": atomic.AddInt64(&counter, 1)})
	})
	if err := n.Run(); err != nil {
		log.Fatal(err)
	}
}
