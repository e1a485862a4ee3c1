package main

import (
	redigolib "github.com/gomodule/redigo/redis"
)

// redigo in its default settings: only the address and the credentials
// (DialPassword, or DialUsername + DialPassword) are given. It speaks RESP2
// and sends `AUTH [<user>] <password>` while dialing, nothing else.
type redigo struct{}

type redigoConn struct{ c redigolib.Conn }

func (redigo) dial(addr, user, password string) (conn, error) {
	options := []redigolib.DialOption{redigolib.DialPassword(password)}
	if user != "" {
		options = append(options, redigolib.DialUsername(user))
	}
	c, err := redigolib.Dial("tcp", addr, options...)
	if err != nil {
		return nil, err
	}
	return redigoConn{c}, nil
}

func (r redigoConn) set(key, value string) (string, error) {
	return redigolib.String(r.c.Do("SET", key, value))
}

// mget is `MGET <encoding>`; redigo.ByteSlices gives each bulk string's bytes.
func (r redigoConn) mget(encoding string) ([][]byte, error) {
	return redigolib.ByteSlices(r.c.Do("MGET", encoding))
}

func (r redigoConn) close() error { return r.c.Close() }
