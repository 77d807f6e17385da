package nodestream_test

import (
	"strings"
	"testing"

	"slipway.dev/platform/nodestream"
)

// TestNewNamesMissingFields: a stream without coordinators, credentials or
// a status source is refused, naming each missing field.
func TestNewNamesMissingFields(t *testing.T) {
	_, err := nodestream.New(nodestream.Config{})
	if err == nil {
		t.Fatal("an empty config was accepted")
	}
	for _, f := range []string{"coordinators", "creds", "statuses"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
}
