// Package h1client is the edge proxy's private HTTP/1.1 client for its hot
// path: bodyless idempotent requests (GET, HEAD, OPTIONS, TRACE) without
// upgrade, written and answered on the caller's goroutine over a pooled
// keep-alive connection, with no per-connection goroutines or channels.
//
// Contract:
//   - Transport carries only requests CanCarry accepts; the proxy sends
//     every other request through net/http's Transport.
//   - The common response head (HTTP/1.1, one plain Content-Length, a status
//     with a body, no Transfer-Encoding or trailers, only bytes net/http
//     accepts) is parsed without http.ReadResponse; anything else is left
//     untouched in the connection's reader and http.ReadResponse reads it.
//     FuzzSimpleResponse holds the two to the same verdict and fields.
//   - A pooled connection the upstream closed while idle is detected before
//     any response byte arrived and the request is replayed on another
//     connection (safe: idempotent, no body).
//   - The response head must arrive within Config.HeaderTimeout; the request
//     context cancels the exchange at any point (a connection keeps its
//     context.AfterFunc watch while its requests share a context).
//   - With an Exchange (Transport.Do), the common response is read without
//     an allocation of its own beyond the head's one string: the Response,
//     its body and the header values' slices live in the Exchange, and the
//     fields can go straight into the caller's header map.
//   - A response body not read to its end closes its connection; one read
//     to EOF returns the connection to the pool, unless KeepOnly says its
//     address left the route table.
package h1client
