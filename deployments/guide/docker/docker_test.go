package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// emptyImage imports an empty image (nothing can run in it, but containers
// can be created from it) and removes it at the end of the test.
func emptyImage(t *testing.T) string {
	t.Helper()
	if !Available(context.Background()) {
		t.Fatal("the Docker Engine does not answer: this test needs it (the guide's containers are removed through it)")
	}
	var b bytes.Buffer
	if err := tar.NewWriter(&b).Close(); err != nil {
		t.Fatal(err)
	}
	img := fmt.Sprintf("slipway-guide-test:%d-%d", os.Getpid(), time.Now().UnixNano())
	cmd := exec.Command("docker", "import", "-", img)
	cmd.Stdin = &b
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", img).Run() })
	return img
}

func TestRemoveLabelledRemovesOnlyThatLabel(t *testing.T) {
	ctx := context.Background()
	img := emptyImage(t)
	if !ImageExists(ctx, img) {
		t.Fatalf("ImageExists(%s) = false after import", img)
	}
	if ImageExists(ctx, img+"-missing") {
		t.Fatal("ImageExists of a missing image = true")
	}
	node := fmt.Sprintf("guide-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	var ids []string
	create := func(value string) {
		out, err := exec.Command("docker", "create", "--label", "slipway.node="+value, "--entrypoint", "/none", img).Output()
		if err != nil {
			t.Fatalf("docker create: %v", err)
		}
		ids = append(ids, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run() })
	create(node)
	create(node)
	create(node + "-other")

	if n, err := CountLabelled(ctx, "slipway.node", node); err != nil || n != 2 {
		t.Fatalf("CountLabelled = %d, %v; want 2", n, err)
	}
	removed, err := RemoveLabelled(ctx, "slipway.node", node)
	if err != nil || len(removed) != 2 {
		t.Fatalf("RemoveLabelled = %v, %v; want 2 ids", removed, err)
	}
	if n, _ := CountLabelled(ctx, "slipway.node", node); n != 0 {
		t.Fatalf("%d containers left with the label", n)
	}
	if n, _ := CountLabelled(ctx, "slipway.node", node+"-other"); n != 1 {
		t.Fatalf("the other node's container was removed too")
	}
	// Nothing to remove is not an error.
	if removed, err := RemoveLabelled(ctx, "slipway.node", node); err != nil || len(removed) != 0 {
		t.Fatalf("second RemoveLabelled = %v, %v", removed, err)
	}
}
