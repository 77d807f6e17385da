package docker

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/registry"
)

// Credentials are registry credentials by registry host, in the format of
// Docker's config.json: {"auths": {"registry.example:5000": {"auth":
// base64("user:password")}}} (or "username" and "password"; keys may be
// URLs such as "https://index.docker.io/v1/"). Only "auths" is read:
// credential helpers and stores are not run by the agent.
type Credentials struct {
	// Source names where they came from, for errors.
	Source string
	byHost map[string]registry.AuthConfig
}

// LoadCredentials reads a credentials file (see Credentials).
func LoadCredentials(path string) (*Credentials, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("docker: registry credentials: %w", err)
	}
	return ParseCredentials(data, path)
}

// ParseCredentials parses a credentials file's content; source names it in
// errors. An entry without a user name and password is an error naming it.
func ParseCredentials(data []byte, source string) (*Credentials, error) {
	var doc struct {
		Auths map[string]struct {
			Auth          string `json:"auth"`
			Username      string `json:"username"`
			Password      string `json:"password"`
			IdentityToken string `json:"identitytoken"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("docker: registry credentials %s: not a Docker config.json: %w", source, err)
	}
	c := &Credentials{Source: source, byHost: map[string]registry.AuthConfig{}}
	for key, e := range doc.Auths {
		host := RegistryHost(key)
		ac := registry.AuthConfig{Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken, ServerAddress: host}
		if e.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("docker: registry credentials %s: auths[%q].auth is not base64: %w", source, key, err)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("docker: registry credentials %s: auths[%q].auth is not base64 of user:password", source, key)
			}
			ac.Username, ac.Password = user, pass
		}
		if ac.Username == "" && ac.IdentityToken == "" {
			return nil, fmt.Errorf("docker: registry credentials %s: auths[%q] has no user name (auth, or username and password)", source, key)
		}
		c.byHost[host] = ac
	}
	return c, nil
}

// For returns the credentials for the registry of image ref, and that
// registry's host ("docker.io" for Docker Hub); ok is false when there are
// none for it (or c is nil).
func (c *Credentials) For(ref string) (host string, ac registry.AuthConfig, ok bool) {
	host = ImageRegistry(ref)
	if c == nil {
		return host, ac, false
	}
	ac, ok = c.byHost[host]
	return host, ac, ok
}

// ImageRegistry is the registry host an image reference pulls from:
// "docker.io" for Docker Hub names ("nginx", "slipway/demo:v1"), else the
// reference's domain ("127.0.0.1:5000").
func ImageRegistry(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "docker.io"
	}
	return RegistryHost(reference.Domain(named))
}

// RegistryHost normalises a registry as written in a credentials file or
// an image reference: scheme and path dropped, Docker Hub's aliases are
// "docker.io".
func RegistryHost(s string) string {
	if strings.Contains(s, "://") {
		if u, err := url.Parse(s); err == nil && u.Host != "" {
			s = u.Host
		}
	}
	s, _, _ = strings.Cut(s, "/")
	switch s = strings.ToLower(s); s {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return s
}
