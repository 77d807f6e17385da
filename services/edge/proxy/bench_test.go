package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"slipway.dev/edge/routetable"
)

// BenchmarkProxy measures one keep-alive request through the proxy to a
// loopback backend (go test -bench Proxy ./proxy).
func BenchmarkProxy(b *testing.B) {
	be := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	bl, _ := net.Listen("tcp", "127.0.0.1:0")
	go be.Serve(bl)
	defer be.Close()
	p := New(Config{})
	p.Apply(context.Background(), routetable.Table{Routes: map[string]routetable.Route{"web": {Service: "web", Host: "w", Path: "/",
		Backends: []routetable.Backend{{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{{ID: "a", Address: bl.Addr().String()}}}}}}})
	srv := NewServer(p)
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(pl)
	defer srv.Close()
	url := "http://" + pl.Addr().String() + "/"
	b.RunParallel(func(pb *testing.PB) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		for pb.Next() {
			req, _ := http.NewRequest("GET", url, nil)
			req.Host = "w"
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
