// Package stitch joins a client's TCP connection to a backend's once an L7
// proxy has forwarded the first request: an eBPF program rewrites addresses
// and ports and translates sequence numbers between the two, so no later
// byte of the connection goes through user space. The Go side reads each
// socket's sequence state at a quiet moment and then keeps the socket
// silent for good.
package stitch
