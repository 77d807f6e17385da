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
// reads them) or returns what http.ReadResponse returns for them; the same
// with an Exchange whose Header receives the fields, which a decline leaves
// empty.
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
		got, fast := readSimpleResponse(br, get, nil)
		ex := &Exchange{Header: http.Header{}}
		br2 := bufio.NewReader(bytes.NewReader(raw))
		br2.Peek(1)
		got2, fast2 := readSimpleResponse(br2, get, ex)
		if fast2 != fast {
			t.Fatalf("with an Exchange: fast %v, without %v, on %q", fast2, fast, raw)
		}
		if !fast {
			if br.Buffered() != buffered || br2.Buffered() != buffered {
				t.Fatalf("declined after consuming %d (%d with an Exchange) bytes", buffered-br.Buffered(), buffered-br2.Buffered())
			}
			if len(ex.Header) != 0 || ex.Direct() {
				t.Fatalf("a decline left fields in the Exchange's header: %v", ex.Header)
			}
			return
		}
		if !ex.Direct() || got2 != &ex.resp || !reflect.DeepEqual(got2.Header, got.Header) || !reflect.DeepEqual(ex.Header, got.Header) ||
			got2.StatusCode != got.StatusCode || got2.Status != got.Status || got2.ContentLength != got.ContentLength || got2.Close != got.Close {
			t.Fatalf("with an Exchange, %+v; without, %+v", got2, got)
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
