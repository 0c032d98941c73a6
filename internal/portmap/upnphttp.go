package portmap

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/huin/goupnp"
	"github.com/huin/goupnp/soap"
)

// A UPnP device is whoever answers SSDP on the LAN first: any machine there
// can. What it answers is bounded here, not by goupnp, whose fetches read
// a description or a SOAP answer of any size, follow redirects and
// LOCATION headers to any host, and use the process's proxy settings.

// maxUPnPBody bounds a device description or SOAP answer: a real IGD's
// description is a few KiB.
const maxUPnPBody = 256 << 10

// upnpTimeout bounds one HTTP exchange with a device.
const upnpTimeout = 3 * time.Second

var errUPnPTooLarge = fmt.Errorf("the UPnP device's answer is over %d KiB: not a gateway", maxUPnPBody>>10)

// newUPnPHTTPClient returns the client for UPnP descriptions and SOAP:
// no proxy, no redirects, small headers, bodies bounded by maxUPnPBody.
func newUPnPHTTPClient() http.Client {
	return http.Client{
		Timeout: upnpTimeout,
		Transport: limitedTransport{&http.Transport{
			Proxy:                  nil, // a gateway on the LAN is never behind a proxy
			DialContext:            (&net.Dialer{Timeout: time.Second}).DialContext,
			ResponseHeaderTimeout:  upnpTimeout,
			MaxResponseHeaderBytes: 16 << 10,
			DisableKeepAlives:      true,
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("the UPnP device answered with a redirect; gateways do not")
		},
	}
}

// limitedTransport ends every response body after maxUPnPBody bytes with
// errUPnPTooLarge.
type limitedTransport struct{ rt http.RoundTripper }

func (t limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxUPnPBody}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, errUPnPTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// lanURL says whether u may be fetched as a UPnP device's: plain HTTP to
// an IP literal that is the gateway or a private or link-local address
// (a device on the LAN), never a name to resolve or a host elsewhere.
func lanURL(u *url.URL, gw netip.Addr) error {
	if u.Scheme != "http" {
		return fmt.Errorf("UPnP URL %q is not plain http", u.Redacted())
	}
	a, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return fmt.Errorf("UPnP URL %q does not name an IP address", u.Redacted())
	}
	a = a.Unmap()
	if a == gw.Unmap() || a.IsPrivate() || a.IsLinkLocalUnicast() {
		return nil
	}
	return fmt.Errorf("UPnP URL %q is not on the LAN", u.Redacted())
}

// fetchRootDevice reads the device description at loc (what goupnp's
// DeviceByURLCtx does, bounded), resolving its URLs against its URLBase
// or loc, which must both be on the LAN.
func fetchRootDevice(ctx context.Context, hc *http.Client, loc *url.URL, gw netip.Addr) (*goupnp.RootDevice, error) {
	if err := lanURL(loc, gw); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("UPnP description %s: %w", loc, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("UPnP description %s: %w", loc, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("UPnP description %s: HTTP %s", loc, resp.Status)
	}
	root := new(goupnp.RootDevice)
	dec := xml.NewDecoder(resp.Body)
	dec.DefaultSpace = goupnp.DeviceXMLNamespace
	if err := dec.Decode(root); err != nil {
		return nil, fmt.Errorf("UPnP description %s: %w", loc, err)
	}
	base := loc
	if root.URLBaseStr != "" {
		if base, err = url.Parse(root.URLBaseStr); err != nil {
			return nil, fmt.Errorf("UPnP description %s: URLBase: %w", loc, err)
		}
		if err := lanURL(base, gw); err != nil {
			return nil, fmt.Errorf("UPnP description %s: URLBase: %w", loc, err)
		}
	}
	root.SetURLBase(base)
	return root, nil
}

// boundSOAP gives a service's SOAP client the bounded HTTP client and
// refuses a control URL off the LAN.
func boundSOAP(c *soap.SOAPClient, hc *http.Client, gw netip.Addr) error {
	if err := lanURL(&c.EndpointURL, gw); err != nil {
		return fmt.Errorf("control URL: %w", err)
	}
	c.HTTPClient = *hc
	return nil
}
