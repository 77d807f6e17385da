package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"slipway.dev/coordinator/notify"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// receiver is a real HTTP server recording the bodies POSTed to it; its
// first fail answers are 503.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies []string
	fail   atomic.Int32
	calls  atomic.Int32
	block  chan struct{} // when set, every request waits for it
}

func newReceiver(t *testing.T, fail int32, block chan struct{}) *receiver {
	r := &receiver{block: block}
	r.fail.Store(fail)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.calls.Add(1)
		if r.block != nil {
			select {
			case <-r.block:
			case <-req.Context().Done():
				return
			}
		}
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		if r.fail.Add(-1) >= 0 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(b))
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

func event(index uint64, kind, msg string) *deployv1.WatchEventsResponse {
	return &deployv1.WatchEventsResponse{Service: "web", Event: &deployv1.RolloutEvent{Index: index, RolloutId: "web-3", Kind: kind, Message: msg,
		State: deployv1.RolloutState_ROLLOUT_STATE_RUNNING, Weights: map[string]int32{"2": 80, "3": 20}}}
}

func run(t *testing.T, n *notify.Notifier) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// Events reach a JSON target and a Slack target in order, each retried
// through 503 answers with backoff.
func TestDeliversJSONAndSlackWithRetries(t *testing.T) {
	js, slack := newReceiver(t, 2, nil), newReceiver(t, 1, nil)
	reg := prometheus.NewRegistry()
	n, err := notify.New(notify.Config{Targets: []notify.Target{{URL: js.srv.URL, Format: notify.JSON}, {URL: slack.srv.URL + "/hooks/x", Format: notify.Slack}},
		InitialWait: 10 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	run(t, n)
	for i, k := range []string{"started", "step", "succeeded"} {
		if !n.Enqueue(event(uint64(i+1), k, k+" message")) {
			t.Fatalf("enqueue %s dropped", k)
		}
	}
	testenv.Eventually(t, 20*time.Second, "three events at both targets", func() error {
		if len(js.got()) != 3 || len(slack.got()) != 3 {
			return fmt.Errorf("json %d, slack %d", len(js.got()), len(slack.got()))
		}
		return nil
	})
	var first struct {
		Service string `json:"service"`
		Event   struct {
			Index     string           `json:"index"`
			RolloutID string           `json:"rolloutId"`
			Kind      string           `json:"kind"`
			Weights   map[string]int32 `json:"weights"`
		} `json:"event"`
	}
	if err := json.Unmarshal([]byte(js.got()[0]), &first); err != nil || first.Service != "web" || first.Event.Kind != "started" || first.Event.Index != "1" || first.Event.Weights["3"] != 20 {
		t.Errorf("json body %s: %+v, %v", js.got()[0], first, err)
	}
	if got := js.got()[2]; !strings.Contains(got, `"succeeded"`) {
		t.Errorf("third json body %s, want succeeded (in order)", got)
	}
	var sl struct{ Text string }
	if err := json.Unmarshal([]byte(slack.got()[1]), &sl); err != nil || !strings.Contains(sl.Text, "web rollout web-3 step: step message") || !strings.Contains(sl.Text, "#2=80% #3=20%") {
		t.Errorf("slack body %s: %q, %v", slack.got()[1], sl.Text, err)
	}
	if js.calls.Load() != 5 {
		t.Errorf("json target called %d times, want 5 (2 refused, 3 delivered)", js.calls.Load())
	}
	if v := value(t, reg, "slipway_notify_sent_total", "json"); v != 3 {
		t.Errorf("sent json = %v, want 3", v)
	}
}

// A receiver that hangs never blocks Enqueue: once the bounded queue is
// full events are dropped and counted.
func TestFullQueueDropsAndCounts(t *testing.T) {
	block := make(chan struct{})
	r := newReceiver(t, 0, block)
	defer close(block)
	reg := prometheus.NewRegistry()
	n, err := notify.New(notify.Config{Targets: []notify.Target{{URL: r.srv.URL, Format: notify.JSON}}, Queue: 2, Timeout: time.Minute, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	run(t, n)
	if !n.Enqueue(event(1, "step", "")) {
		t.Fatal("first event dropped")
	}
	testenv.Eventually(t, 10*time.Second, "the first delivery to hang at the receiver", func() error {
		if r.calls.Load() != 1 {
			return fmt.Errorf("calls %d", r.calls.Load())
		}
		return nil
	})
	dropped := 0
	for i := range 10 {
		if !n.Enqueue(event(uint64(i+2), "step", "")) {
			dropped++
		}
	}
	if dropped != 8 {
		t.Errorf("dropped %d of 10 with a queue of 2, want 8", dropped)
	}
	if v := value(t, reg, "slipway_notify_dropped_total", ""); v != 8 {
		t.Errorf("slipway_notify_dropped_total = %v, want 8", v)
	}
}

// A 4xx answer is not retried; it counts as failed. Kinds filter.
func TestPermanentFailureAndKinds(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		http.Error(w, "no", http.StatusNotFound)
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	n, err := notify.New(notify.Config{Targets: []notify.Target{{URL: srv.URL, Format: notify.Slack}}, Kinds: []string{"failed"}, InitialWait: time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	run(t, n)
	n.Enqueue(event(1, "step", "")) // not a configured kind
	n.Enqueue(event(2, "failed", "analysis failed"))
	testenv.Eventually(t, 10*time.Second, "the failed event given up", func() error {
		if v := value(t, reg, "slipway_notify_failed_total", "slack"); v != 1 {
			return fmt.Errorf("failed = %v", v)
		}
		return nil
	})
	if calls.Load() != 1 {
		t.Errorf("receiver called %d times, want 1 (a 404 is not retried, step is filtered)", calls.Load())
	}
}

func TestConfigValidate(t *testing.T) {
	err := notify.Config{Targets: []notify.Target{{URL: "ftp://x", Format: notify.JSON}, {URL: "http://ok", Format: "xml"}}, Kinds: []string{"Step!"}, Queue: -1}.Validate()
	for _, want := range []string{`notify url "ftp://x"`, `notify format "xml"`, `notify kinds: "Step!"`, "notify queue"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to name %s", err, want)
		}
	}
	if _, err := notify.ParseKinds("step, failed"); err != nil {
		t.Errorf("ParseKinds: %v", err)
	}
}

// value is the sum of the series of name in reg whose format label is
// format (every series when format is empty).
func value(t *testing.T, reg *prometheus.Registry, name, format string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := format == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "format" && l.GetValue() == format {
					ok = true
				}
			}
			if ok {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
