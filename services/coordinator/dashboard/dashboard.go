// Package dashboard serves the coordinator's web dashboard: services,
// rollouts, instances, a traffic chart, history and audit, and the operator
// buttons, live over server-sent events.
//
// The dashboard holds no authority of its own. A user logs in by pasting a
// Slipway token; it is kept in an HttpOnly, SameSite=Strict cookie (Secure
// over HTTPS) and every page, stream and button calls the coordinator's own
// gRPC API with it, so the API's token checks (the same ACL code as for
// slipctl and grpcurl) decide what the user sees and may do, and the audit
// log names the token's accessor. Actions are POSTs guarded against
// cross-site requests twice: the standard library's cross-origin protection
// (Sec-Fetch-Site / Origin) and a per-token CSRF token in a header.
package dashboard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"

	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// cookieName is the cookie holding the user's token.
const cookieName = "slipway_token"

// csrfHeader carries the CSRF token on actions.
const csrfHeader = "X-Slipway-CSRF"

// Instance is one allocation as the dashboard shows it.
type Instance struct {
	// Allocation is the allocation as committed for its node.
	Allocation *agentv1.Allocation
	// CreatedAt is when it was committed (zero when unknown).
	CreatedAt time.Time
	// Health is the last state its agent reported ("healthy",
	// "starting", ...), empty when this coordinator has none.
	Health string
	// HealthSince is when Health was last reported.
	HealthSince time.Time
}

// Config configures a dashboard.
type Config struct {
	// Addr is the listen address, e.g. 127.0.0.1:7402.
	Addr string
	// TLS serves HTTPS with the coordinator's certificate; nil serves
	// plaintext HTTP, which only Insecure allows.
	TLS *tls.Config
	// Insecure allows plaintext HTTP (the coordinator's -insecure); the
	// token cookie then lacks the Secure attribute.
	Insecure bool
	// Conn reaches the coordinator's own gRPC API; each call carries the
	// user's token as "authorization: Bearer".
	Conn grpc.ClientConnInterface
	// Instances returns the committed allocations of every service; the
	// dashboard shows those of the services the user's token sees.
	Instances func() []Instance
	// Events returns the committed events of a rollout (for the chart's
	// health line and failure marks); it is asked only about rollouts the
	// API has just listed for the user's token. Nil: the chart uses the
	// rollouts' step history alone.
	Events func(rolloutID string) []*deployv1.RolloutEvent
	// Signals returns the requests and errors the edges reported for a
	// release of a service in n slots of length slot from from (the leader
	// keeps them); it is asked only about services the API has just shown
	// the user's token. Nil: the chart shows no measured traffic.
	Signals func(service string, release uint64, from time.Time, slot time.Duration, n int) (requests, errors []uint64)
	// PauseEnds returns when the current timed pause of a rollout ends
	// (false: none running); asked only about rollouts the API has just
	// shown the user's token. Nil: no countdown.
	PauseEnds func(rolloutID string) (time.Time, bool)
	// Changed returns a channel closed at the next change of the state; it
	// wakes the live streams. Nil: they refresh every second.
	Changed func() <-chan struct{}
	// Logger receives the dashboard's logs.
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server is a running dashboard.
type Server struct {
	cfg     Config
	log     *slog.Logger
	api     *api
	tmpl    *template.Template
	csrfKey []byte
	lis     net.Listener
	srv     *http.Server
	done    chan error
	secure  bool
	// stop ends every request's context: Close ends the live streams
	// instead of waiting for them.
	stop context.CancelFunc
}

// Start listens on cfg.Addr and serves the dashboard until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.TLS == nil && !cfg.Insecure {
		return nil, errors.New("dashboard: TLS is required (plaintext only with -insecure)")
	}
	if cfg.Conn == nil {
		return nil, errors.New("dashboard: a connection to the coordinator's API is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Instances == nil {
		cfg.Instances = func() []Instance { return nil }
	}
	h, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard: listen: %w", err)
	}
	if cfg.TLS != nil {
		lis = tls.NewListener(lis, cfg.TLS)
	}
	h.lis = lis
	base, stop := context.WithCancel(context.Background())
	h.stop = stop
	h.srv = &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return base },
		ErrorLog:    slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)}
	h.done = make(chan error, 1)
	go func() { h.done <- h.srv.Serve(lis) }()
	cfg.Logger.Info("dashboard started", "url", h.URL())
	return h, nil
}

func newServer(cfg Config) (*Server, error) {
	tmpl, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: templates: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("dashboard: csrf key: %w", err)
	}
	return &Server{cfg: cfg, log: cfg.Logger, api: &api{conn: cfg.Conn}, tmpl: tmpl, csrfKey: key, secure: cfg.TLS != nil}, nil
}

// URL is where the dashboard answers, e.g. https://127.0.0.1:7402/.
func (s *Server) URL() string {
	scheme := "http"
	if s.secure {
		scheme = "https"
	}
	return scheme + "://" + s.lis.Addr().String() + "/"
}

// Close stops the listener and ends the live streams.
func (s *Server) Close(ctx context.Context) error {
	s.stop() // the streams end; Shutdown then waits only for short requests
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = s.srv.Close()
	}
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}

// Handler is the dashboard's HTTP handler: pages, the event stream, the
// actions and the static files, behind cross-origin protection.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("GET /{$}", s.authed(s.overviewPage))
	mux.HandleFunc("GET /services/{name}", s.authed(s.servicePage))
	mux.HandleFunc("GET /events", s.authed(s.events))
	mux.HandleFunc("POST /api/rollouts/{id}/{action}", s.authed(s.rolloutAction))
	mux.HandleFunc("POST /api/services/{name}/rollback", s.authed(s.rollback))
	cop := http.NewCrossOriginProtection()
	return securityHeaders(cop.Handler(mux))
}

// securityHeaders sets the headers every answer carries: no framing, no
// sniffing, no referrer, and a content security policy allowing only the
// dashboard's own script and style.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// session is the logged-in user of one request.
type session struct {
	secret string
	who    string // the token's description and short accessor
	csrf   string
}

type sessionKey struct{}

func sessionOf(r *http.Request) *session { return r.Context().Value(sessionKey{}).(*session) }

// authed runs h for a request carrying a valid token cookie: the token is
// checked with the API (WhoAmI, which any valid token may call). Without
// one, pages go to the login page and the stream and actions answer 401.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(cookieName)
		page := r.Method == http.MethodGet && r.URL.Path != "/events"
		if err != nil || c.Value == "" {
			s.unauthenticated(w, r, page, "")
			return
		}
		tok, err := s.api.whoAmI(r.Context(), c.Value)
		if err != nil {
			s.clearCookie(w)
			s.unauthenticated(w, r, page, describe(err))
			return
		}
		who := tok.GetDescription()
		if who == "" {
			who = "token"
		}
		acc := tok.GetAccessorId()
		if len(acc) > 8 {
			acc = acc[:8]
		}
		sess := &session{secret: c.Value, who: who + " (" + acc + ")", csrf: s.csrfFor(c.Value)}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)))
	}
}

func (s *Server) unauthenticated(w http.ResponseWriter, r *http.Request, page bool, why string) {
	if page {
		target := "/login"
		if why != "" {
			target += "?error=" + urlEscape(why)
		}
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	writeJSONError(w, http.StatusUnauthorized, "log in with a Slipway token first"+suffix(why))
}

// csrfFor is the CSRF token of a session: an HMAC of its token secret
// under a key drawn at start, so it cannot be derived without the secret.
func (s *Server) csrfFor(secret string) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte(secret))
	return hex.EncodeToString(m.Sum(nil))
}

// checkCSRF reports whether an action carries the session's CSRF token.
func (s *Server) checkCSRF(r *http.Request) bool {
	got := r.Header.Get(csrfHeader)
	want := sessionOf(r).csrf
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, "login.html", map[string]any{"Error": r.URL.Query().Get("error"), "Secure": s.secure})
}

// login checks the pasted token with the API and, when it is valid, keeps
// it in the cookie.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		s.render(w, "login.html", map[string]any{"Error": "the login form could not be read: " + err.Error(), "Secure": s.secure})
		return
	}
	secret := strings.TrimSpace(r.PostForm.Get("token"))
	if secret == "" {
		w.WriteHeader(http.StatusBadRequest)
		s.render(w, "login.html", map[string]any{"Error": "paste a Slipway token (the secret, e.g. from slipctl acl token create)", "Secure": s.secure})
		return
	}
	if _, err := s.api.whoAmI(r.Context(), secret); err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		s.render(w, "login.html", map[string]any{"Error": "the coordinator refused this token: " + describe(err), "Secure": s.secure})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: secret, Path: "/", HttpOnly: true, Secure: s.secure,
		SameSite: http.SameSiteStrictMode, MaxAge: int((12 * time.Hour).Seconds())})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	s.clearCookie(w)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (s *Server) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, Secure: s.secure,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

func (s *Server) render(w http.ResponseWriter, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := s.tmpl.ExecuteTemplate(w, name, data); err != nil {
		s.log.Warn("dashboard: render", "template", name, "err", err)
	}
}

func suffix(why string) string {
	if why == "" {
		return ""
	}
	return ": " + why
}
