package shadow_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/graylane/graylane/internal/shadowtest"
)

// item is the JSON the test application answers /items/{i} with.
func item(i int) map[string]any {
	return map[string]any{"id": i, "name": fmt.Sprintf("item-%d", i), "price": 100 + i, "tags": []string{"a", "b"}}
}

// recordedItem is the application's response to /items/{i} as the
// capture holds it: keys in another order and spaced, as another JSON
// encoder writes them; chunked or with a Content-Length.
func recordedItem(i int, chunked bool) []byte {
	body := fmt.Sprintf(`{ "tags": ["a", "b"], "price": %d, "name": "item-%d", "id": %d }`, 100+i, i, i)
	head := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 07 Dec 2026 12:00:00 GMT\r\n"
	if !chunked {
		return []byte(head + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	}
	half := len(body) / 2
	return []byte(head + "Transfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", half, body[:half], len(body)-half, body[half:]))
}

func getRequest(path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: app.example\r\nUser-Agent: test\r\n\r\n")
}

// app is the test application: GET /items/{i} answers item(i); change,
// if given, may alter the answer (status, item) of path i.
func app(change func(i int, status *int, it map[string]any)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/items/"))
		if err != nil || r.Method != http.MethodGet {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		status, it := http.StatusOK, item(i)
		if change != nil {
			change(i, &status, it)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Server-Timing", fmt.Sprintf("app;dur=%d", time.Now().Nanosecond()%100))
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(it)
	})
}

var server = netip.MustParseAddrPort("10.0.0.10:80")

func client(n int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(n >> 8), byte(n)}), uint16(40000+n%20000))
}

// trafficCapture records conns connections of perConn GETs of
// /items/{i} each (i counting up over all), answered as recordedItem
// does, and one POST per connection: sequential and chunked on even
// connections, pipelined on odd ones. It returns the capture and the
// number of GETs.
func trafficCapture(conns, perConn int) (*shadowtest.Capture, int) {
	c := shadowtest.New()
	i := 0
	for n := range conns {
		k := c.Dial(client(n), server)
		var pipelined [][]byte
		for range perConn {
			if n%2 == 0 {
				k.Send(getRequest(fmt.Sprintf("/items/%d", i)))
				c.Advance(2 * time.Millisecond)
				k.Reply(recordedItem(i, true))
			} else {
				k.Send(getRequest(fmt.Sprintf("/items/%d", i)))
				pipelined = append(pipelined, recordedItem(i, false))
			}
			i++
			c.Advance(time.Millisecond)
		}
		for _, r := range pipelined {
			k.Reply(r)
		}
		k.Send([]byte("POST /orders HTTP/1.1\r\nHost: app.example\r\nContent-Length: 7\r\n\r\n{\"a\":1}"))
		k.Reply([]byte("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"))
		k.Close()
	}
	return c, i
}
