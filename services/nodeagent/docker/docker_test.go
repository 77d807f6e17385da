package docker

import "testing"

func TestHealthFromStatus(t *testing.T) {
	for in, want := range map[string]string{
		"Up 3 seconds (healthy)":         "healthy",
		"Up 3 seconds (unhealthy)":       "unhealthy",
		"Up 1 second (health: starting)": "starting",
		"Up 5 minutes":                   "",
		"Exited (137) 2 seconds ago":     "",
	} {
		if got := healthFromStatus(in); got != want {
			t.Errorf("healthFromStatus(%q) = %q, want %q", in, got, want)
		}
	}
}
