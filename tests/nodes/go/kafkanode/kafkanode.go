// Package kafkanode is a node for Maelstrom's kafka workload on Maelstrom's lin-kv service (Gossip Glomers challenge 5b): the
// node keeps no state of its own. Each log is one lin-kv key "log-<key>" holding the array of its
// messages; a send reads it and appends with compare-and-set, retrying when another send got
// there first, so the offset (the message's index) is decided by the linearizable cas. Committed
// offsets live in "commit-<key>" and only move forward (cas again). A request whose service call
// timed out gets error 0 (indefinite: the cas may have applied).
//
// Run(true) is the WRONG variant (cmd/kafka-cached-polls): to save a round trip, polls are
// answered from a cache of the messages THIS node appended. A poll then jumps over the offsets
// other nodes' sends took (Maelstrom's kafka checker: a poll skipped offsets known to exist).
package kafkanode

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"sort"
	"sync"
	"time"

	"splitbrain.test/nodes/maelstrom"
)

const (
	kv            = "lin-kv"
	serviceWait   = time.Second
	casAttemptMax = 100
)

type kafka struct {
	n     *maelstrom.Node
	mu    sync.Mutex
	cache map[string]map[int]any // the wrong variant's: key -> offset -> message sent here
}

func (k *kafka) call(body map[string]any) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), serviceWait)
	defer cancel()
	reply, err := k.n.SyncRPC(ctx, kv, body)
	if err != nil {
		return nil, err
	}
	return maelstrom.Body(reply), nil
}

func isCode(err error, code int) bool {
	var re *maelstrom.RPCError
	return errors.As(err, &re) && re.Code == code
}

// readLog returns the messages of a log ([] when the key does not exist yet).
func (k *kafka) readLog(key string) ([]any, error) {
	body, err := k.call(map[string]any{"type": "read", "key": "log-" + key})
	if isCode(err, maelstrom.KeyDoesNotExist) {
		return []any{}, nil
	}
	if err != nil {
		return nil, err
	}
	msgs, _ := body["value"].([]any)
	return msgs, nil
}

func (k *kafka) append(key string, m any) (int, error) {
	for attempt := 0; attempt < casAttemptMax; attempt++ {
		cur, err := k.readLog(key)
		if err != nil {
			return 0, err
		}
		next := append(append([]any{}, cur...), m)
		_, err = k.call(map[string]any{"type": "cas", "key": "log-" + key, "from": cur,
			"to": next, "create_if_not_exists": true})
		if isCode(err, maelstrom.PreconditionFailed) || isCode(err, maelstrom.KeyDoesNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		return len(cur), nil
	}
	return 0, &maelstrom.RPCError{Code: maelstrom.TemporarilyUnavailable, Text: "cas contention"}
}

func (k *kafka) commit(key string, offset float64) error {
	for attempt := 0; attempt < casAttemptMax; attempt++ {
		body, err := k.call(map[string]any{"type": "read", "key": "commit-" + key})
		var cur any
		if isCode(err, maelstrom.KeyDoesNotExist) {
			cur = nil
		} else if err != nil {
			return err
		} else {
			cur = body["value"]
			if c, ok := cur.(float64); ok && c >= offset {
				return nil // already at or past it
			}
		}
		_, err = k.call(map[string]any{"type": "cas", "key": "commit-" + key, "from": cur,
			"to": offset, "create_if_not_exists": true})
		if isCode(err, maelstrom.PreconditionFailed) || isCode(err, maelstrom.KeyDoesNotExist) {
			continue
		}
		return err
	}
	return &maelstrom.RPCError{Code: maelstrom.TemporarilyUnavailable, Text: "cas contention"}
}

// fail answers a request whose service call went wrong: a timeout is indefinite.
func (k *kafka) fail(req maelstrom.Message, err error) error {
	var re *maelstrom.RPCError
	if errors.As(err, &re) && re.Code == maelstrom.TemporarilyUnavailable {
		return k.n.Reply(req, map[string]any{"type": "error", "code": re.Code, "text": re.Text})
	}
	return k.n.Reply(req, map[string]any{"type": "error", "code": maelstrom.Timeout,
		"text": err.Error()})
}

// Run serves the kafka workload until stdin closes; cachedPolls switches the bug on.
func Run(cachedPolls bool) {
	n := maelstrom.NewNode()
	k := &kafka{n: n, cache: map[string]map[int]any{}}
	n.Handle("send", func(msg maelstrom.Message) error {
		var body struct {
			Key string `json:"key"`
			Msg any    `json:"msg"`
		}
		if err := json.Unmarshal(msg.Body, &body); err != nil {
			return err
		}
		off, err := k.append(body.Key, body.Msg)
		if err != nil {
			return k.fail(msg, err)
		}
		if cachedPolls {
			k.mu.Lock()
			if k.cache[body.Key] == nil {
				k.cache[body.Key] = map[int]any{}
			}
			k.cache[body.Key][off] = body.Msg
			k.mu.Unlock()
		}
		return n.Reply(msg, map[string]any{"type": "send_ok", "offset": off})
	})
	n.Handle("poll", func(msg maelstrom.Message) error {
		var body struct {
			Offsets map[string]int `json:"offsets"`
		}
		if err := json.Unmarshal(msg.Body, &body); err != nil {
			return err
		}
		out := map[string][][2]any{}
		if cachedPolls {
			k.mu.Lock()
			for key, from := range body.Offsets {
				pairs := [][2]any{}
				for off, m := range k.cache[key] {
					if off >= from {
						pairs = append(pairs, [2]any{off, m})
					}
				}
				sort.Slice(pairs, func(i, j int) bool { return pairs[i][0].(int) < pairs[j][0].(int) })
				out[key] = pairs
			}
			k.mu.Unlock()
			return n.Reply(msg, map[string]any{"type": "poll_ok", "msgs": out})
		}
		for key, from := range body.Offsets {
			msgs, err := k.readLog(key)
			if err != nil {
				return k.fail(msg, err)
			}
			pairs := [][2]any{}
			for i := from; i < len(msgs); i++ {
				pairs = append(pairs, [2]any{i, msgs[i]})
			}
			out[key] = pairs
		}
		return n.Reply(msg, map[string]any{"type": "poll_ok", "msgs": out})
	})
	n.Handle("commit_offsets", func(msg maelstrom.Message) error {
		var body struct {
			Offsets map[string]float64 `json:"offsets"`
		}
		if err := json.Unmarshal(msg.Body, &body); err != nil {
			return err
		}
		for key, off := range body.Offsets {
			if err := k.commit(key, off); err != nil {
				return k.fail(msg, err)
			}
		}
		return n.Reply(msg, map[string]any{"type": "commit_offsets_ok"})
	})
	n.Handle("list_committed_offsets", func(msg maelstrom.Message) error {
		var body struct {
			Keys []string `json:"keys"`
		}
		if err := json.Unmarshal(msg.Body, &body); err != nil {
			return err
		}
		out := map[string]any{}
		for _, key := range body.Keys {
			b, err := k.call(map[string]any{"type": "read", "key": "commit-" + key})
			if isCode(err, maelstrom.KeyDoesNotExist) {
				continue
			}
			if err != nil {
				return k.fail(msg, err)
			}
			out[key] = b["value"]
		}
		return n.Reply(msg, map[string]any{"type": "list_committed_offsets_ok", "offsets": out})
	})
	if err := n.Run(); err != nil {
		log.Fatal(err)
	}
}
