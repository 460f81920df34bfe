// Maelstrom's kafka workload on the lin-kv service: see package kafkanode.
package main

import "splitbrain.test/nodes/kafkanode"

func main() { kafkanode.Run(false) }
