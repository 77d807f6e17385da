// Package notify sends rollout events to webhooks: a JSON body (the
// WatchEvents response as protojson) or a Slack-compatible {"text": ...}
// body, from a bounded queue drained in the background, each delivery
// retried with exponential backoff. Enqueue never blocks: when the queue is
// full the event is dropped and counted, so a slow or dead receiver never
// holds a rollout.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Format is the body a target receives.
type Format string

// The formats.
const (
	// JSON is the WatchEventsResponse as protojson, like a line of
	// `slipctl events -o json`.
	JSON Format = "json"
	// Slack is {"text": "..."}, the body of a Slack (or Mattermost,
	// Rocket.Chat, Discord /slack) incoming webhook.
	Slack Format = "slack"
)

// Target is one webhook.
type Target struct {
	// URL is where events are POSTed (http or https).
	URL string
	// Format is the body.
	Format Format
}

// Defaults of Config.
const (
	DefaultQueue       = 1024
	DefaultTimeout     = 5 * time.Second
	DefaultMaxElapsed  = 2 * time.Minute
	DefaultInitialWait = 500 * time.Millisecond
)

// Config configures a Notifier.
type Config struct {
	// Targets receive every event; none makes a Notifier that drops nothing
	// and sends nothing.
	Targets []Target
	// Kinds, when set, limits the events sent to these kinds ("step",
	// "paused", "analysis", "succeeded", ...).
	Kinds []string
	// Queue bounds the events waiting to be sent; zero: DefaultQueue.
	Queue int
	// Timeout bounds one POST; zero: DefaultTimeout.
	Timeout time.Duration
	// MaxElapsed is how long one event is retried before it is given up;
	// zero: DefaultMaxElapsed.
	MaxElapsed time.Duration
	// InitialWait is the first wait between attempts (it doubles, with
	// jitter, up to 30s); zero: DefaultInitialWait.
	InitialWait time.Duration
	// Client makes the requests; nil: a client of its own.
	Client *http.Client
	// Logger receives failures; nil: slog.Default().
	Logger *slog.Logger
	// Registerer, when set, gets the notifier's metrics.
	Registerer prometheus.Registerer
}

// Validate names each bad field of c.
func (c Config) Validate() error {
	var errs []error
	for _, t := range c.Targets {
		u, err := url.Parse(t.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("notify url %q: must be an absolute http or https URL", t.URL))
		}
		if t.Format != JSON && t.Format != Slack {
			errs = append(errs, fmt.Errorf("notify format %q: must be json or slack", t.Format))
		}
	}
	for _, k := range c.Kinds {
		if _, err := ParseKinds(k); err != nil || k == "" {
			errs = append(errs, fmt.Errorf("notify kinds: %q is not an event kind", k))
		}
	}
	if c.Queue < 0 {
		errs = append(errs, fmt.Errorf("notify queue: must not be negative, got %d", c.Queue))
	}
	if c.Timeout < 0 || c.MaxElapsed < 0 || c.InitialWait < 0 {
		errs = append(errs, errors.New("notify timeout, max elapsed and initial wait must not be negative"))
	}
	return errors.Join(errs...)
}

// Notifier delivers events to its targets. Enqueue is safe for concurrent
// use; Run drains the queue.
type Notifier struct {
	cfg   Config
	queue chan *deployv1.WatchEventsResponse
	kinds map[string]bool

	sent    *prometheus.CounterVec
	failed  *prometheus.CounterVec
	dropped prometheus.Counter
	depth   prometheus.GaugeFunc
}

// New returns a Notifier for cfg (see Config.Validate).
func New(cfg Config) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxElapsed == 0 {
		cfg.MaxElapsed = DefaultMaxElapsed
	}
	if cfg.InitialWait == 0 {
		cfg.InitialWait = DefaultInitialWait
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Notifier{cfg: cfg, queue: make(chan *deployv1.WatchEventsResponse, cfg.Queue)}
	if len(cfg.Kinds) > 0 {
		n.kinds = map[string]bool{}
		for _, k := range cfg.Kinds {
			n.kinds[k] = true
		}
	}
	n.sent = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipway_notify_sent_total",
		Help: "Rollout events delivered to a notification webhook, by format."}, []string{"format"})
	n.failed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipway_notify_failed_total",
		Help: "Rollout events given up after every retry to a notification webhook, by format."}, []string{"format"})
	n.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "slipway_notify_dropped_total",
		Help: "Rollout events dropped because the notification queue was full."})
	n.depth = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "slipway_notify_queue_depth",
		Help: "Rollout events waiting to be sent to the notification webhooks."}, func() float64 { return float64(len(n.queue)) })
	for _, t := range cfg.Targets {
		n.sent.WithLabelValues(string(t.Format))
		n.failed.WithLabelValues(string(t.Format))
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{n.sent, n.failed, n.dropped, n.depth} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("notify: register metrics: %w", err)
			}
		}
	}
	return n, nil
}

// Enabled reports whether n has a target.
func (n *Notifier) Enabled() bool { return n != nil && len(n.cfg.Targets) > 0 }

// Enqueue queues ev for delivery and returns at once: false when ev was
// dropped because the queue is full (counted in
// slipway_notify_dropped_total). Events of kinds not configured are
// skipped (true).
func (n *Notifier) Enqueue(ev *deployv1.WatchEventsResponse) bool {
	if !n.Enabled() || (n.kinds != nil && !n.kinds[ev.GetEvent().GetKind()]) {
		return true
	}
	select {
	case n.queue <- ev:
		return true
	default:
		n.dropped.Inc()
		return false
	}
}

// Run sends queued events, in order, until ctx ends; what is still queued
// then is dropped.
func (n *Notifier) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-n.queue:
			for _, t := range n.cfg.Targets {
				if err := n.deliver(ctx, t, ev); err != nil {
					if ctx.Err() != nil {
						return
					}
					n.failed.WithLabelValues(string(t.Format)).Inc()
					n.cfg.Logger.Warn("notification not delivered", "url", redact(t.URL), "event", ev.GetEvent().GetIndex(), "kind", ev.GetEvent().GetKind(), "err", err)
					continue
				}
				n.sent.WithLabelValues(string(t.Format)).Inc()
			}
		}
	}
}

// deliver POSTs ev to t, retrying with exponential backoff for up to
// MaxElapsed: after a transport error, a timeout, a 429 or a 5xx. Another
// 4xx is permanent (the receiver refuses the body).
func (n *Notifier) deliver(ctx context.Context, t Target, ev *deployv1.WatchEventsResponse) error {
	body, err := Body(t.Format, ev)
	if err != nil {
		return err
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = n.cfg.InitialWait, 30*time.Second, n.cfg.MaxElapsed
	return backoff.Retry(func() error {
		actx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(actx, http.MethodPost, t.URL, bytes.NewReader(body))
		if err != nil {
			return backoff.Permanent(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "slipway-coordinator")
		resp, err := n.cfg.Client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			return nil
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			return fmt.Errorf("answered %d", resp.StatusCode)
		default:
			return backoff.Permanent(fmt.Errorf("answered %d", resp.StatusCode))
		}
	}, backoff.WithContext(b, ctx))
}

// Body renders ev for a target of format f.
func Body(f Format, ev *deployv1.WatchEventsResponse) ([]byte, error) {
	switch f {
	case JSON:
		return protojson.MarshalOptions{UseProtoNames: false}.Marshal(ev)
	case Slack:
		return slackBody(Text(ev))
	}
	return nil, fmt.Errorf("notify: unknown format %q", f)
}

// Text says ev in one line for people, e.g.
// "web rollout web-3 step: step 2/3: #3 at 50% (PROGRESSING, weights #2=50% #3=50%)".
func Text(ev *deployv1.WatchEventsResponse) string {
	e := ev.GetEvent()
	var b strings.Builder
	fmt.Fprintf(&b, "%s rollout %s %s", ev.GetService(), e.GetRolloutId(), e.GetKind())
	if msg := e.GetMessage(); msg != "" {
		b.WriteString(": " + msg)
	}
	if a := e.GetAnalysis(); a != nil && a.GetReason() != "" && !strings.Contains(e.GetMessage(), a.GetReason()) {
		fmt.Fprintf(&b, " (analysis %s: %s, failures %d/%d)", strings.ToLower(strings.TrimPrefix(a.GetResult().String(), "ANALYSIS_RESULT_")),
			a.GetReason(), a.GetFailures(), a.GetFailureLimit())
	}
	state := strings.TrimPrefix(e.GetState().String(), "ROLLOUT_STATE_")
	fmt.Fprintf(&b, " (%s", state)
	if w := weights(e.GetWeights()); w != "" {
		b.WriteString(", weights " + w)
	}
	b.WriteString(")")
	return b.String()
}

func weights(w map[string]int32) string {
	keys := make([]string, 0, len(w))
	for k := range w {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if len(keys[i]) != len(keys[j]) {
			return len(keys[i]) < len(keys[j])
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("#%s=%d%%", k, w[k]))
	}
	return strings.Join(parts, " ")
}

func slackBody(text string) ([]byte, error) {
	return json.Marshal(map[string]string{"text": text})
}

// redact drops a URL's query and user info (Slack webhook URLs carry their
// secret in the path, so only scheme and host are logged).
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(bad url)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// ParseKinds splits a comma list of event kinds (lower-case words such as
// step, paused, analysis, succeeded, reverted).
func ParseKinds(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if k == "" || strings.Trim(k, "abcdefghijklmnopqrstuvwxyz_") != "" {
			return nil, fmt.Errorf("%q is not an event kind (lower-case words such as step, paused, analysis, succeeded, reverted)", k)
		}
		out = append(out, k)
	}
	return out, nil
}
