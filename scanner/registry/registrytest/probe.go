package registrytest

import (
	"bufio"
	"net"
)

// probeListener counts connections that open with a TLS handshake record (first byte 0x16)
// on a plain-HTTP server; the bytes are handed on untouched.
type probeListener struct {
	net.Listener
	reg *Registry
}

func (l *probeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &peekedConn{Conn: c, br: bufio.NewReader(c), reg: l.reg}, nil
}

// peekedConn looks at its first byte on the first Read (in the server's goroutine, so Accept
// never blocks on a silent client) and serves every byte from its buffer.
type peekedConn struct {
	net.Conn
	br     *bufio.Reader
	reg    *Registry
	peeked bool
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if !c.peeked {
		c.peeked = true
		if b, err := c.br.Peek(1); err == nil && b[0] == 0x16 {
			c.reg.mu.Lock()
			c.reg.tlsAttempts++
			c.reg.mu.Unlock()
		}
	}
	return c.br.Read(p)
}
