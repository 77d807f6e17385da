package h1client

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"testing"
)

// FuzzSimpleResponse: whatever bytes an upstream sends, readSimpleResponse
// either declines them without consuming a byte (http.ReadResponse then
// reads them) or returns what http.ReadResponse returns for them.
func FuzzSimpleResponse(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a:  2 \r\n\r\nhello",
		"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Fold: a\r\n b\r\n\r\nok",
		"HTTP/1.1 200 OK\nContent-Length: 2\n\nok\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	get, _ := http.NewRequest("GET", "http://w/", nil)
	f.Fuzz(func(t *testing.T, raw []byte) {
		br := bufio.NewReader(bytes.NewReader(raw))
		br.Peek(1)
		buffered := br.Buffered()
		got, fast := readSimpleResponse(br, get)
		if !fast {
			if br.Buffered() != buffered {
				t.Fatalf("declined after consuming %d bytes", buffered-br.Buffered())
			}
			return
		}
		want, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), get)
		if err != nil {
			t.Fatalf("accepted what ReadResponse refuses (%v): %q", err, raw)
		}
		if got.StatusCode != want.StatusCode || got.Status != want.Status || got.ContentLength != want.ContentLength ||
			got.Close != want.Close || !reflect.DeepEqual(got.Header, want.Header) {
			t.Fatalf("differs from ReadResponse on %q:\n got %d %q len %d close %v %v\nwant %d %q len %d close %v %v", raw,
				got.StatusCode, got.Status, got.ContentLength, got.Close, got.Header,
				want.StatusCode, want.Status, want.ContentLength, want.Close, want.Header)
		}
	})
}
