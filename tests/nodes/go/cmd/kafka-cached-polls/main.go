// A WRONG kafka node: polls are answered from a cache of this node's own sends (see package
// kafkanode), so they skip the offsets other nodes appended.
package main

import "splitbrain.test/nodes/kafkanode"

func main() { kafkanode.Run(true) }
