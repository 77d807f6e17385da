// Package h1server is the edge's HTTP/1.1 server: a lean path for the
// common request and net/http for everything else, on one listener.
//
// The lean path reads and parses requests on the connection's goroutine
// (no background read, no per-request goroutine, context or deadline
// timer), with one reused Request, header map and ResponseWriter per
// connection; the only allocation per request in the server is the copy of
// the request head its strings slice. Pipelined requests are answered in
// order and their responses share writes; held responses are sent before
// the server waits for the rest of a request head.
//
// Contract:
//   - parseHead accepts only a strict subset of HTTP/1.1 (see its doc) and
//     reads it exactly as net/http does (FuzzParseHead holds the two to the
//     same Request fields). Whatever it declines - HTTP/1.0, HTTP/2 prior
//     knowledge (h2c), Upgrade, Expect, chunked bodies, absolute-form, bare
//     LF, escaped paths, heads over 4 KiB - goes with the bytes already read
//     to a net/http server over the same connection, for the rest of that
//     connection; net/http gives its own verdict.
//   - A few requests are refused outright, on both paths where net/http
//     would accept them: Content-Length with Transfer-Encoding, two
//     Content-Lengths, obs-fold (400), more header fields than
//     Limits.MaxHeaderCount (431); a body over MaxBodyBytes is 413 and more
//     requests in flight from one address than MaxRequestsPerClient are 429.
//   - Timeouts: the head must complete within ReadHeaderTimeout of its first
//     partial read, an idle connection is closed after IdleTimeout, each
//     body read waits at most ReadBodyTimeout and each write at most
//     WriteTimeout (on net/http's path too, where the connection itself
//     moves its write deadline before each write: net/http's WriteTimeout
//     would bound a whole response instead). Deadlines are moved lazily (when less than 3/4 of the
//     timeout is left), so the effective limits lie between 3/4 and all of
//     the configured value.
//   - A client that goes away is noticed at the next read or write, not
//     while the handler waits (there is no background read); the proxy's
//     upstream timeouts bound that wait.
//   - Responses: a Content-Length given by the handler is used; otherwise a
//     body that ends within 4 KiB gets one and a longer one is chunked;
//     trailers (declared or http.TrailerPrefix) force chunking. Date is
//     added when absent; Content-Type is never sniffed. Flush is supported,
//     Hijack is not (upgrades take net/http's path).
package h1server
