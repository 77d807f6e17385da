package catalog

import "testing"

func TestReleaseFromTags(t *testing.T) {
	n, err := ReleaseFromTags([]string{Tag, TrackTag("canary"), ReleaseTag(42)})
	if err != nil || n != 42 {
		t.Fatalf("ReleaseFromTags = %d, %v; want 42, nil", n, err)
	}
	if _, err := ReleaseFromTags([]string{"release=x"}); err == nil {
		t.Error("bad tag: want error")
	}
	if _, err := ReleaseFromTags([]string{Tag}); err == nil {
		t.Error("missing tag: want error")
	}
}
