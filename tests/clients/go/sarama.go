package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"

	"github.com/IBM/sarama"
)

// saramaPartitions reads keys, hex-encoded one per line (so that any bytes
// get through, the empty key being an empty line), and writes for each key one
// line with the partition sarama's hash partitioner (sarama.NewHashPartitioner,
// as the original Go service used it) picks for each of the partition counts
// in args, separated by spaces.
//
// Every key is given as a sarama.ByteEncoder, so the empty key is an encoder
// of zero bytes and is hashed: sarama's hash partitioner falls back to random
// placement only for a message with no key at all (ProducerMessage.Key ==
// nil, the interface), never for an empty one. FNV-1a of no bytes is its
// offset basis, which places "" on partitions 0, 3 and 3 of 3, 8 and 12
// (protocol.md's vector).
func saramaPartitions(args []string, in io.Reader, out io.Writer) error {
	if len(args) == 0 {
		usage()
	}
	counts := make([]int32, len(args))
	for i, a := range args {
		n, err := strconv.ParseInt(a, 10, 32)
		if err != nil || n < 1 {
			return fmt.Errorf("partition count %q", a)
		}
		counts[i] = int32(n)
	}
	partitioner := sarama.NewHashPartitioner("placement")
	if !partitioner.RequiresConsistency() {
		return fmt.Errorf("sarama's hash partitioner says it is not consistent")
	}
	lines := bufio.NewScanner(in)
	lines.Buffer(make([]byte, 64*1024), 16*1024*1024)
	w := bufio.NewWriter(out)
	for lines.Scan() {
		key, err := hex.DecodeString(lines.Text())
		if err != nil {
			return fmt.Errorf("key %q: %w", lines.Text(), err)
		}
		for i, n := range counts {
			p, err := partitioner.Partition(&sarama.ProducerMessage{Key: sarama.ByteEncoder(key)}, n)
			if err != nil {
				return err
			}
			if i > 0 {
				w.WriteByte(' ')
			}
			fmt.Fprint(w, p)
		}
		w.WriteByte('\n')
	}
	if err := lines.Err(); err != nil {
		return err
	}
	return w.Flush()
}
