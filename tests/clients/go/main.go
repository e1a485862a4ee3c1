// The Go side of the client matrix (tests/clients.rs): go-redis v9 and redigo
// publishing and consuming through the gateway in their default settings, and
// sarama's hash partitioner placing keys, for the Rust tests to compare.
//
// Usage:
//
//	go-clients go-redis PORT PUB_DSN JSON_SUB_DSN PB_SUB_DSN
//	go-clients redigo   PORT PUB_DSN JSON_SUB_DSN PB_SUB_DSN
//	go-clients sarama-partitions N...  < keys (hex, one per line)
//
// The client commands publish three records (two with the whole AUTH string as
// the password, one with the username/password form), try a wrong secret, read
// the records back with MGET json as one subscriber and with MGET pb as
// another (a second consumer group), commit in each, and print one line of
// JSON:
//
//	{"published":[SET replies],"bad_auth":error text,
//	 "json":{"consumed":[hex of each message],"commit":reply},
//	 "pb":{"consumed":[hex of each message],"commit":reply}}
//
// Messages are hex so that protobuf bytes reach the Rust test unchanged. It
// compares the report exactly and reads Kafka back.
package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "go-redis":
		err = runClient(os.Args[2:], goRedis{})
	case "redigo":
		err = runClient(os.Args[2:], redigo{})
	case "sarama-partitions":
		err = saramaPartitions(os.Args[2:], os.Stdin, os.Stdout)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go-clients go-redis|redigo PORT PUB_DSN JSON_SUB_DSN PB_SUB_DSN\n"+
		"       go-clients sarama-partitions N... < hex keys, one per line")
	os.Exit(2)
}

// A Redis client library as the matrix uses it: connections made with only
// the address and the credentials, SET and MGET through its ordinary API.
type library interface {
	// dial connects with the whole AUTH string as the password, or with
	// username and password when user is not empty.
	dial(addr, user, password string) (conn, error)
}

type conn interface {
	set(key, value string) (string, error)
	// mget is `MGET <encoding>`: the messages, byte for byte.
	mget(encoding string) ([][]byte, error)
	close() error
}

// The records each client publishes, as key, value and whether it uses the
// username/password form.
type record struct {
	key, value string
	username   bool
}

func records(client string) []record {
	return []record{
		{client + "-password", `{"n":1}`, false},
		{client + "-password", `{"n":2}`, false},
		{client + "-username", `{"n":3}`, true},
	}
}

type consumedReport struct {
	Consumed []string `json:"consumed"`
	Commit   *string  `json:"commit"`
}

type report struct {
	Published []string       `json:"published"`
	BadAuth   string         `json:"bad_auth"`
	JSON      consumedReport `json:"json"`
	PB        consumedReport `json:"pb"`
}

func runClient(args []string, lib library) error {
	if len(args) != 4 {
		usage()
	}
	addr := "127.0.0.1:" + args[0]
	pubDsn, jsonDsn, pbDsn := args[1], args[2], args[3]
	user, rest, ok := strings.Cut(pubDsn, ":")
	if !ok {
		return fmt.Errorf("no ':' in %q", pubDsn)
	}
	client := os.Args[1]
	var r report

	byPassword, err := lib.dial(addr, "", pubDsn)
	if err != nil {
		return fmt.Errorf("connecting with the password form: %w", err)
	}
	// The username/password form: AUTH <key> <rest> is AUTH <key>:<rest>.
	byUsername, err := lib.dial(addr, user, rest)
	if err != nil {
		return fmt.Errorf("connecting with the username form: %w", err)
	}
	for _, rec := range records(client) {
		c := byPassword
		if rec.username {
			c = byUsername
		}
		reply, err := c.set(rec.key, rec.value)
		if err != nil {
			return fmt.Errorf("SET %s: %w", rec.key, err)
		}
		r.Published = append(r.Published, reply)
	}
	byPassword.close()
	byUsername.close()

	// A wrong secret surfaces as the library's error for it.
	bad := strings.Replace(pubDsn, "app_secret1", "nope", 1)
	if c, err := lib.dial(addr, "", bad); err != nil {
		r.BadAuth = err.Error()
	} else {
		if _, err := c.set("never", "published"); err != nil {
			r.BadAuth = err.Error()
		} else {
			r.BadAuth = "accepted?!"
		}
		c.close()
	}

	if r.JSON, err = consumeAndCommit(lib, addr, jsonDsn, "json", len(r.Published), last); err != nil {
		return err
	}
	if r.PB, err = consumeAndCommit(lib, addr, pbDsn, "pb", len(r.Published), first); err != nil {
		return err
	}
	out, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}

const (
	first = iota
	last
)

// consumeAndCommit MGETs (each a long poll of at most the gateway's
// poll_timeout) until `count` messages arrived, then commits the first or the
// last one (`SET <partition> <offset>`). Bounded, so that a gateway that never
// delivers fails the test with a report; the Rust side's bound is longer.
func consumeAndCommit(lib library, addr, dsn, encoding string, count, which int) (consumedReport, error) {
	var r consumedReport
	c, err := lib.dial(addr, "", dsn)
	if err != nil {
		return r, fmt.Errorf("connecting the %s subscriber: %w", encoding, err)
	}
	defer c.close()
	var messages [][]byte
	deadline := time.Now().Add(20 * time.Second)
	for len(messages) < count && time.Now().Before(deadline) {
		batch, err := c.mget(encoding)
		if err != nil {
			return r, fmt.Errorf("MGET %s: %w", encoding, err)
		}
		messages = append(messages, batch...)
	}
	r.Consumed = []string{}
	for _, m := range messages {
		r.Consumed = append(r.Consumed, hex.EncodeToString(m))
	}
	if len(messages) == 0 {
		return r, nil
	}
	m := messages[0]
	if which == last {
		m = messages[len(messages)-1]
	}
	partition, offset, err := position(encoding, m)
	if err != nil {
		return r, err
	}
	reply, err := c.set(strconv.FormatInt(partition, 10), strconv.FormatInt(offset, 10))
	if err != nil {
		return r, fmt.Errorf("commit: %w", err)
	}
	r.Commit = &reply
	return r, nil
}

// position is the partition and offset of a message as MGET encoded it.
func position(encoding string, m []byte) (partition, offset int64, err error) {
	if encoding != "pb" {
		var msg struct{ Partition, Offset int64 }
		if err := json.Unmarshal(m, &msg); err != nil {
			return 0, 0, fmt.Errorf("message %q: %w", m, err)
		}
		return msg.Partition, msg.Offset, nil
	}
	return pbPosition(m)
}

// pbPosition reads fields 4 (partition) and 5 (offset) of a MessagePB
// (proto/databus.proto), both varints, skipping the other fields; absent
// fields are 0, as protobuf has it.
func pbPosition(m []byte) (partition, offset int64, err error) {
	varint := func() (uint64, error) {
		var v uint64
		for shift := uint(0); shift < 64; shift += 7 {
			if len(m) == 0 {
				return 0, fmt.Errorf("truncated varint")
			}
			b := m[0]
			m = m[1:]
			v |= uint64(b&0x7f) << shift
			if b < 0x80 {
				return v, nil
			}
		}
		return 0, fmt.Errorf("varint too long")
	}
	for len(m) > 0 {
		tag, err := varint()
		if err != nil {
			return 0, 0, err
		}
		switch field, wire := tag>>3, tag&7; wire {
		case 0:
			v, err := varint()
			if err != nil {
				return 0, 0, err
			}
			switch field {
			case 4:
				partition = int64(int32(v))
			case 5:
				offset = int64(v)
			}
		case 2:
			n, err := varint()
			if err != nil {
				return 0, 0, err
			}
			if n > uint64(len(m)) {
				return 0, 0, fmt.Errorf("field %d: length %d past the end", field, n)
			}
			m = m[n:]
		default:
			return 0, 0, fmt.Errorf("field %d: unexpected wire type %d", field, wire)
		}
	}
	return partition, offset, nil
}
