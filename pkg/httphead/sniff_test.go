package httphead

import "testing"

func TestSniff(t *testing.T) {
	tests := []struct {
		in   string
		want Protocol
	}{
		{"", NeedMore},
		{"G", NeedMore},
		{"GET", NeedMore},
		{"GET ", NeedMore},
		{"GET /", HTTP1},
		{"\r\nGET /", HTTP1},
		{"\r\n", NeedMore},
		{"PATCH http://a/ HTTP/1.1", HTTP1},
		{"GET  /", Unknown},
		{" GET /", Unknown},
		{"G\x00T /", Unknown},
		{"SSH-2.0-OpenSSH_9.6\r\n", Unknown},
		{"AVERYLONGTOKENTHATISNOTAMETHOD /", Unknown},
		{"P", NeedMore},
		{"PRI", NeedMore},
		{"PRI * HTTP/2.0\r\n", NeedMore},
		{Preface[:len(Preface)-1], NeedMore},
		{Preface, HTTP2},
		{Preface + "\x00\x00\x00\x04", HTTP2},
		{"PRI /x HTTP/1.1", HTTP1},
		{"PRI * HTTP/1.1", HTTP1},
		{"\x16", NeedMore},
		{"\x16\x03", NeedMore},
		{"\x16\x03\x01", TLS},
		{"\x16\x03\x01\x02\x00\x01", TLS},
		{"\x16\x02", Unknown},
		{"\x16\x03\x09", Unknown},
		{"\x15\x03\x03\x00\x02", Unknown},
		{"\x80\x2e\x01\x03\x01", Unknown},
	}
	for _, tt := range tests {
		if got := Sniff([]byte(tt.in)); got != tt.want {
			t.Errorf("Sniff(%q) = %s; want %s", tt.in, got, tt.want)
		}
	}
}
