package stack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// The components that talk to Consul, each with its policy file
// <PolicyDir>/<name>.hcl.
var consulComponents = []string{"coordinator", "nodeagent", "edge"}

// consulACLConfig is the -hcl that starts the demo Consul with ACLs on,
// default deny, and mgmt as its management token.
func consulACLConfig(mgmt string) string {
	return fmt.Sprintf(`acl { enabled = true, default_policy = "deny", enable_token_persistence = true, tokens { initial_management = %q } }`, mgmt)
}

// newUUID is a random (version 4) UUID, the form Consul wants for secrets.
func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// setupConsulACL creates, with the management token, one policy per
// component from policyDir and a token holding only it, and writes each
// token's secret to <dir>/consul-<component>.token (mode 0600). It returns
// the token files by component. It retries while Consul's ACL system is
// still starting, within ctx.
func setupConsulACL(ctx context.Context, consulAddr, mgmt, policyDir, dir string) (map[string]string, error) {
	files := map[string]string{}
	for _, comp := range consulComponents {
		rules, err := os.ReadFile(filepath.Join(policyDir, comp+".hcl"))
		if err != nil {
			return nil, fmt.Errorf("stack: Consul policy of the %s: %w (see -consul-policies)", comp, err)
		}
		name := "slipway-" + comp
		if err := consulPut(ctx, consulAddr, mgmt, "/v1/acl/policy", map[string]any{"Name": name, "Rules": string(rules)}); err != nil {
			return nil, fmt.Errorf("stack: Consul policy %s: %w", name, err)
		}
		secret := newUUID()
		if err := consulPut(ctx, consulAddr, mgmt, "/v1/acl/token", map[string]any{
			"Description": "slipway guide: " + comp, "SecretID": secret, "Policies": []map[string]string{{"Name": name}}}); err != nil {
			return nil, fmt.Errorf("stack: Consul token of the %s: %w", comp, err)
		}
		f := filepath.Join(dir, "consul-"+comp+".token")
		if err := os.WriteFile(f, []byte(secret+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
		files[comp] = f
	}
	return files, nil
}

// consulPut PUTs body as JSON to Consul with token, retrying for up to 30s
// while the ACL system is not ready yet (HTTP 403/500 right after start).
func consulPut(ctx context.Context, consulAddr, token, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+consulAddr+path, bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("X-Consul-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("PUT %s: %w", path, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
