package main

import (
	"context"
	"fmt"

	goredislib "github.com/redis/go-redis/v9"
)

// go-redis v9 in its default settings: only Addr and the credentials
// (Password, or Username + Password) are given. It speaks RESP3 by default
// and connects with `HELLO 3 AUTH <user|default> <password>`, then sends
// `CLIENT MAINT_NOTIFICATIONS ON ...` and `CLIENT SETINFO` twice.
type goRedis struct{}

type goRedisConn struct{ c *goredislib.Client }

func (goRedis) dial(addr, user, password string) (conn, error) {
	c := goredislib.NewClient(&goredislib.Options{Addr: addr, Username: user, Password: password})
	// go-redis connects lazily: the first command dials and authenticates.
	return goRedisConn{c}, nil
}

func (g goRedisConn) set(key, value string) (string, error) {
	return g.c.Set(context.Background(), key, value, 0).Result()
}

// mget is `MGET <encoding>` through the typed helper: the encoding is its one
// "key", and each message comes back as a string (Go strings hold any bytes).
func (g goRedisConn) mget(encoding string) ([][]byte, error) {
	values, err := g.c.MGet(context.Background(), encoding).Result()
	if err != nil {
		return nil, err
	}
	messages := make([][]byte, 0, len(values))
	for _, v := range values {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("unexpected reply element %#v", v)
		}
		messages = append(messages, []byte(s))
	}
	return messages, nil
}

func (g goRedisConn) close() error { return g.c.Close() }
