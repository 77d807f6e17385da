package h1client

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// FuzzRoundTrip: whatever bytes an upstream answers a GET with (then
// closing), the Transport returns the status and body http.ReadResponse
// reads from them, or an error where ReadResponse or its body fails; it
// never panics or hangs.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhalf",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"garbage",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		tr := New(Config{Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			client, server := net.Pipe()
			go func() {
				defer server.Close()
				br := bufio.NewReader(server)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				server.Write(raw)
			}()
			return client, nil
		}, HeaderTimeout: 5 * time.Second})
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "http://upstream/", nil)
		want, werr := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), req)
		var wantBody []byte
		if werr == nil {
			wantBody, werr = io.ReadAll(want.Body)
		}
		got, err := tr.RoundTrip(req)
		var gotBody []byte
		if err == nil {
			gotBody, err = io.ReadAll(got.Body)
			got.Body.Close()
		}
		switch {
		case werr != nil:
			return // an error or a 101 refusal on our side is the safe answer; a body may differ in how it fails
		case err != nil:
			if want.StatusCode != http.StatusSwitchingProtocols && want.StatusCode >= 200 {
				t.Fatalf("RoundTrip failed (%v) where ReadResponse reads %d %q from %q", err, want.StatusCode, wantBody, raw)
			}
		case got.StatusCode != want.StatusCode && want.StatusCode >= 200:
			t.Fatalf("status %d, ReadResponse %d, on %q", got.StatusCode, want.StatusCode, raw)
		case want.StatusCode >= 200 && !bytes.Equal(gotBody, wantBody):
			t.Fatalf("body %q, ReadResponse %q, on %q", gotBody, wantBody, raw)
		}
	})
}
