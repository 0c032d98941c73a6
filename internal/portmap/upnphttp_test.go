package portmap

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestLANURL(t *testing.T) {
	gw := netip.MustParseAddr("203.0.113.1") // a gateway with a public LAN address
	tests := []struct {
		url string
		ok  bool
	}{
		{"http://192.168.1.1:5000/rootDesc.xml", true},
		{"http://10.0.0.1/desc", true},
		{"http://172.31.255.254:1900/", true},
		{"http://169.254.1.1/desc", true},
		{"http://[fe80::1%25eth0]:5000/desc", true},
		{"http://[fd00::1]:5000/desc", true},
		{"http://203.0.113.1:5000/desc", true},  // the gateway itself
		{"http://8.8.8.8/desc", false},          // a host on the internet
		{"http://203.0.113.2:5000/desc", false}, // not the gateway
		{"http://127.0.0.1:8478/", false},       // our own services
		{"http://[::1]:8478/", false},
		{"http://router.lan/desc", false}, // a name to resolve
		{"https://192.168.1.1/desc", false},
		{"file:///etc/passwd", false},
		{"http://[::ffff:192.168.1.1]/desc", true},
		{"http://[::ffff:8.8.8.8]/desc", false},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatalf("%s: %v", tt.url, err)
		}
		if err := lanURL(u, gw); (err == nil) != tt.ok {
			t.Errorf("lanURL(%s) = %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
}

// TestUPnPAnswersBounded serves what a hostile device on the LAN could:
// an endless description, a redirect, a URLBase or control URL that points
// off the LAN. Each is refused with an error that says so, fast, and none
// is followed (the off-LAN URLs are never fetched: traffic stays on
// loopback).
func TestUPnPAnswersBounded(t *testing.T) {
	offLAN := strings.Replace(igdDescription, "<device>", "<URLBase>http://198.51.100.7:80/</URLBase><device>", 1)
	absControl := strings.Replace(igdDescription, "<controlURL>/ctl/IPConn</controlURL>", "<controlURL>http://198.51.100.7/ctl</controlURL>", 1)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"endless description", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><friendlyName>`))
			chunk := []byte(strings.Repeat("A", 64<<10))
			for i := 0; i < 64 && r.Context().Err() == nil; i++ { // 4 MiB at most
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, "KiB"},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere.xml", http.StatusFound) // on loopback still
		}, "redirect"},
		{"URLBase off the LAN", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(offLAN))
		}, "not on the LAN"},
		{"control URL off the LAN", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(absControl))
		}, "not on the LAN"},
		{"huge header", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Junk", strings.Repeat("j", 64<<10))
			_, _ = w.Write([]byte(igdDescription))
		}, "header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			loc, _ := url.Parse(srv.URL + "/rootDesc.xml")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _, err := wanClient(ctx, loc, netip.MustParseAddr("127.0.0.1"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("wanClient: %v, want an error about %q", err, tt.want)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("wanClient ran into the deadline instead of refusing: %v", err)
			}
		})
	}
	// The well-formed description still gives a client.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(igdDescription)) }))
	defer srv.Close()
	loc, _ := url.Parse(srv.URL + "/rootDesc.xml")
	if _, where, err := wanClient(context.Background(), loc, netip.MustParseAddr("127.0.0.1")); err != nil || !strings.Contains(where, "WANIPConnection:1") {
		t.Fatalf("well-formed description: %q, %v", where, err)
	}
}
