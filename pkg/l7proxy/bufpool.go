package l7proxy

import "sync"

// copyBufSize is the size of the buffers the proxy reads into itself:
// the backend's first bytes while Conns.Peek wants them, and what a cut
// client still sends during the answer's lingering close.
const copyBufSize = 16 << 10

// bufPool reuses byte buffers of one size across connections: a
// one-request connection otherwise allocates (and zeroes) its buffers
// anew, and the garbage collector takes them back. A buffer is put back
// only once nothing refers to it any more: its reads and writes have
// returned, and Conns.Peek does not keep what it is shown.
type bufPool struct {
	size int
	pool sync.Pool // *[]byte of len and cap size
}

var (
	copyBufs = &bufPool{size: copyBufSize}
	headBufs = &bufPool{size: firstRead}
)

// get returns a buffer of p.size bytes, of undefined content.
func (p *bufPool) get() *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, p.size)
	return &b
}

// put gives b back; the caller must not use it any more.
func (p *bufPool) put(b *[]byte) {
	if b == nil || cap(*b) != p.size {
		return
	}
	*b = (*b)[:p.size]
	p.pool.Put(b)
}
