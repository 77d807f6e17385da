package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
)

// ProgressEvery is the shortest time between two progress reports of one
// pull.
var ProgressEvery = time.Second

// OnProgress sets the function told about image pulls: started, how far
// (bytes of layers), done. The agent reports it in the allocation's status
// and so in the rollout's events.
func (d *Driver) OnProgress(f func(allocID, msg string)) { d.progress = f }

func (d *Driver) report(allocID, msg string) {
	if d.progress != nil {
		d.progress(allocID, msg)
	}
}

// ensureImage makes ref present: inspected locally, else pulled from its
// registry with the credentials for it, within the pull timeout. Errors
// name the registry and say whether it refused the credentials, asked for
// some, or did not answer in time.
func (d *Driver) ensureImage(ctx context.Context, allocID, ref string) error {
	if _, err := d.cli.ImageInspect(ctx, ref); err == nil {
		return nil
	} else if !client.IsErrNotFound(err) {
		return fmt.Errorf("docker: inspect image %q: %w", ref, err)
	}
	var creds *Credentials
	if d.authFile != "" {
		c, err := LoadCredentials(d.authFile)
		if err != nil {
			return fmt.Errorf("image %q: %v: %w", ref, err, ErrImageMissing)
		}
		creds = c
	}
	host, ac, haveCreds := creds.For(ref)
	opts := image.PullOptions{}
	if haveCreds {
		enc, err := registry.EncodeAuthConfig(ac)
		if err != nil {
			return fmt.Errorf("docker: encode credentials for %s: %w", host, err)
		}
		opts.RegistryAuth = enc
	}
	pctx, cancel := context.WithTimeout(ctx, d.pullTimeout)
	defer cancel()
	t0 := time.Now()
	d.report(allocID, fmt.Sprintf("pulling %s from registry %s", ref, host))
	rc, err := d.cli.ImagePull(pctx, ref, opts)
	if err == nil {
		err = d.follow(pctx, allocID, ref, rc)
		rc.Close()
	}
	if err == nil {
		if _, ierr := d.cli.ImageInspect(ctx, ref); ierr != nil {
			err = errors.New("pull finished without the image")
		}
	}
	if err != nil {
		why := err.Error()
		lower := strings.ToLower(why)
		authErr := strings.Contains(lower, "unauthorized") || strings.Contains(lower, "authentication required") ||
			strings.Contains(lower, "denied") || strings.Contains(lower, "no basic auth credentials")
		switch {
		case pctx.Err() != nil && ctx.Err() == nil:
			why = fmt.Sprintf("registry %s: the pull did not finish within the pull timeout %s (-pull-timeout)", host, d.pullTimeout)
		case haveCreds && authErr:
			why = fmt.Sprintf("registry %s refused the credentials of user %q from %s: %s", host, ac.Username, creds.Source, why)
		case authErr:
			why = fmt.Sprintf("registry %s asks for credentials and the agent has none for it (-registry-auth-file): %s", host, why)
		default:
			why = fmt.Sprintf("registry %s: %s", host, why)
		}
		d.report(allocID, "pull failed: "+why)
		return fmt.Errorf("image %q is not present locally and could not be pulled: %s: %w", ref, why, ErrImageMissing)
	}
	d.report(allocID, fmt.Sprintf("pulled %s from registry %s in %s", ref, host, time.Since(t0).Round(time.Millisecond)))
	return nil
}

// follow reads the Engine's pull messages to the end, reporting progress at
// most every ProgressEvery; an error message ends the pull with it.
func (d *Driver) follow(ctx context.Context, allocID, ref string, rc io.Reader) error {
	type layer struct{ current, total int64 }
	layers := map[string]*layer{}
	last := time.Now()
	dec := json.NewDecoder(rc)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read pull progress: %w", err)
		}
		if m.Error != nil {
			return errors.New(m.Error.Message)
		}
		if m.ErrorMessage != "" {
			return errors.New(m.ErrorMessage)
		}
		if m.ID != "" && m.Progress != nil && m.Progress.Total > 0 && m.Status == "Downloading" {
			l := layers[m.ID]
			if l == nil {
				l = &layer{}
				layers[m.ID] = l
			}
			l.current, l.total = m.Progress.Current, m.Progress.Total
		}
		if m.ID != "" && (m.Status == "Download complete" || m.Status == "Pull complete") {
			if l := layers[m.ID]; l != nil {
				l.current = l.total
			}
		}
		if time.Since(last) >= ProgressEvery && len(layers) > 0 {
			last = time.Now()
			var cur, tot int64
			done := 0
			ids := make([]string, 0, len(layers))
			for id := range layers {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			for _, id := range ids {
				l := layers[id]
				cur, tot = cur+l.current, tot+l.total
				if l.current >= l.total {
					done++
				}
			}
			d.report(allocID, fmt.Sprintf("pulling %s: %s of %s, %d of %d layers downloaded", ref, size(cur), size(tot), done, len(layers)))
		}
	}
}

// size renders bytes for people: "512 B", "3.4 MB".
func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
