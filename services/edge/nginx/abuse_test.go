package nginx

import (
	"context"
	"fmt"
	"testing"
	"time"

	"slipway.dev/edge/internal/abuse"
	"slipway.dev/edge/routetable"
	"slipway.dev/platform/testenv"
)

// TestAbuseCorpus sends each smuggling and abuse case to nginx mode and
// checks the client's answer and what reaches the backend.
func TestAbuseCorpus(t *testing.T) {
	r, listen := startRunner(t)
	be := abuse.StartBackend(t)
	if err := r.Apply(context.Background(), tableFor(map[string]routetable.Upstream{abuse.Host: {ID: "a", Address: be.Addr}})); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "nginx routes "+abuse.Host, func() error {
		if code, body := fetch(listen, abuse.Host); code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	for _, c := range abuse.Cases {
		t.Run(c.Name, func(t *testing.T) {
			want := c.Proxy
			if c.Nginx != nil {
				want = *c.Nginx
			}
			if err := abuse.Check(listen, be, c, want); err != nil {
				t.Error(err)
			}
		})
	}
}
