// Package weborigin is the list of web origins (scheme://host[:port]) whose
// pages may use the rendezvous' browser-facing endpoints: the TURN
// credentials of /turn-credentials and the PeerJS signaling at /peerjs.
// It answers CORS for them. The Origin header only says which page a
// browser is running; a non-browser client can send any Origin, so the
// list keeps other sites' pages from spending the relay through their
// visitors' browsers, and the per-IP limits and TURN quotas do the rest.
package weborigin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Allowlist is a set of origins. The zero value (and nil) allows none.
type Allowlist struct {
	origins map[string]struct{}
	list    []string
}

// Parse builds an allowlist from origins as users write them
// ("https://game.example", "http://198.18.0.1:8080"). Paths, queries,
// wildcards and userinfo are refused: an origin is scheme, host and port.
func Parse(origins []string) (*Allowlist, error) {
	a := &Allowlist{origins: make(map[string]struct{}, len(origins))}
	for _, o := range origins {
		n, err := normalize(o)
		if err != nil {
			return nil, fmt.Errorf("bad --web-origin %q: %w (write it as the browser sends it, e.g. https://game.example or http://localhost:8080)", o, err)
		}
		if _, dup := a.origins[n]; !dup {
			a.origins[n] = struct{}{}
			a.list = append(a.list, n)
		}
	}
	return a, nil
}

// normalize lowercases scheme and host and drops the scheme's default
// port, as browsers do when they serialize an origin.
func normalize(o string) (string, error) {
	if strings.Contains(o, "*") {
		return "", errors.New("wildcards are not allowed: list each origin")
	}
	u, err := url.Parse(strings.TrimSpace(o))
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", errors.New("scheme must be http or https")
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("an origin is scheme://host[:port], nothing more")
	}
	host := strings.ToLower(u.Host)
	switch {
	case u.Scheme == "http" && strings.HasSuffix(host, ":80"):
		host = strings.TrimSuffix(host, ":80")
	case u.Scheme == "https" && strings.HasSuffix(host, ":443"):
		host = strings.TrimSuffix(host, ":443")
	}
	return u.Scheme + "://" + host, nil
}

// Empty reports whether no origin is allowed.
func (a *Allowlist) Empty() bool { return a == nil || len(a.origins) == 0 }

// Origins lists the allowed origins in the order given.
func (a *Allowlist) Origins() []string {
	if a == nil {
		return nil
	}
	return append([]string(nil), a.list...)
}

// Allowed reports whether origin (an Origin header's value) is listed.
func (a *Allowlist) Allowed(origin string) bool {
	if a.Empty() || origin == "" {
		return false
	}
	n, err := normalize(origin)
	if err != nil {
		return false
	}
	_, ok := a.origins[n]
	return ok
}

// Verdict is what a request's Origin header means for it.
type Verdict int

const (
	// NoOrigin: no Origin header, so not a cross-origin browser request
	// (a server-side caller, or a browser navigating).
	NoOrigin Verdict = iota
	// Allowed: a listed origin.
	Allowed
	// Foreign: an origin that is not listed.
	Foreign
)

func (v Verdict) String() string {
	switch v {
	case NoOrigin:
		return "no-origin"
	case Allowed:
		return "allowed"
	case Foreign:
		return "foreign"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Check classifies r and, for a listed origin, sets the CORS headers that
// let the page read the answer. Every answer varies by Origin, so caches
// must not hand one origin's answer to another.
func (a *Allowlist) Check(w http.ResponseWriter, r *http.Request) Verdict {
	w.Header().Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin == "" {
		return NoOrigin
	}
	if !a.Allowed(origin) {
		return Foreign
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
	return Allowed
}

// Preflight answers a CORS preflight (OPTIONS) for methods and headers:
// 204 with the Access-Control-Allow-* headers for a listed origin, 403
// otherwise. It reports whether r was a preflight it answered.
func (a *Allowlist) Preflight(w http.ResponseWriter, r *http.Request, methods, headers string) bool {
	if r.Method != http.MethodOptions {
		return false
	}
	if a.Check(w, r) != Allowed {
		http.Error(w, "origin not allowed: the rendezvous' --web-origin does not list it", http.StatusForbidden)
		return true
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", methods)
	if headers != "" {
		h.Set("Access-Control-Allow-Headers", headers)
	}
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}
