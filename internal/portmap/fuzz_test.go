package portmap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

// The answers of a gateway are a stranger's bytes (anything on the LAN can
// answer SSDP or port 5351): the probes must not panic or hang on them,
// and may only report what a well-formed answer said.

// igdDescription is a minimal IGD device description with a
// WANIPConnection:1 service, the shape miniupnpd serves.
const igdDescription = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>/ctl/IPConn</controlURL>
<eventSubURL>/evt/IPConn</eventSubURL><SCPDURL>/WANIPCn.xml</SCPDURL></service></serviceList>
</device></deviceList></device></deviceList></device></root>`

// FuzzUPnPResponses feeds an SSDP answer (as httpu parses the datagram)
// and a device description (served on loopback) through the code that
// picks the gateway and its WAN service. The description is always
// fetched from the test server, never from the LOCATION the fuzzer wrote:
// traffic stays on loopback.
func FuzzUPnPResponses(f *testing.F) {
	var desc atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(*desc.Load())
	}))
	f.Cleanup(srv.Close)
	gw := netip.MustParseAddr("127.0.0.1")
	f.Add([]byte("HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: "+srv.URL+"/rootDesc.xml\r\n\r\n"), []byte(igdDescription))
	f.Add([]byte("HTTP/1.1 200 OK\r\nLOCATION: ::bad\r\n\r\n"), []byte("<root>"))
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\n"), []byte{})
	f.Fuzz(func(t *testing.T, ssdpAnswer, description []byte) {
		desc.Store(&description)
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(ssdpAnswer)), nil)
		if err != nil {
			return // httpu drops what does not parse
		}
		locs := igdLocations([]*http.Response{resp}, gw)
		if len(locs) > 1 {
			t.Fatalf("one answer gave %d locations", len(locs))
		}
		if len(locs) == 1 {
			// The LOCATION header, parsed by an independent reader.
			want, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || want.String() != locs[0].String() {
				t.Fatalf("location %s, header says %q", locs[0], resp.Header.Get("Location"))
			}
		}
		loc, _ := url.Parse(srv.URL + "/rootDesc.xml")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, where, err := wanClient(ctx, loc, gw)
		if bytes.Equal(description, []byte(igdDescription)) && err != nil {
			t.Fatalf("the well-formed description gave no WAN client: %v", err)
		}
		if err == nil && (c == nil || where == "") {
			t.Fatalf("a WAN client without a name (%q) or a nil one", where)
		}
		if ctx.Err() != nil {
			t.Fatal("the description fetch ran into the deadline")
		}
	})
}

// natpmpGateway answers every datagram on port 5351 of a free loopback
// address (127.0.0.2 and up: each fuzzing worker process needs its own,
// and NAT-PMP's port is fixed) with the bytes answer holds.
func natpmpGateway(f *testing.F, answer *atomic.Pointer[[]byte]) netip.Addr {
	var c *net.UDPConn
	var err error
	for i := 2; i < 64 && c == nil; i++ {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(i)), Port: pcpPort})
	}
	if c == nil {
		f.Skipf("cannot bind port %d on loopback for a fake gateway: %v", pcpPort, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			_, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDP(*answer.Load(), from)
		}
	}()
	f.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
}

// FuzzNATPMPResponse answers the NAT-PMP probe with arbitrary bytes: it
// returns by its deadline and reports the gateway's external address only
// when the answer is a well-formed external-address response (RFC 6886
// section 3.2, checked here independently of go-nat-pmp), and then exactly
// that address.
func FuzzNATPMPResponse(f *testing.F) {
	var answer atomic.Pointer[[]byte]
	gw := natpmpGateway(f, &answer)
	ok := []byte{0, 128, 0, 0, 0, 0, 0, 1, 198, 18, 0, 9}
	f.Add(ok)
	f.Add([]byte{0, 128, 0, 3, 0, 0, 0, 1, 198, 18, 0, 9}) // result 3: network failure
	f.Add([]byte{0, 129, 0, 0})
	f.Add([]byte{})
	lo := netip.MustParseAddr("127.0.0.1")
	f.Fuzz(func(t *testing.T, b []byte) {
		answer.Store(&b)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		p := probeNATPMP(ctx, gw, lo)
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("the probe took %s past a 50 ms deadline", d)
		}
		wellFormed := len(b) >= 12 && b[0] == 0 && b[1] == 128 && binary.BigEndian.Uint16(b[2:4]) == 0
		if bytes.Equal(b, ok) && !p.Available {
			t.Fatalf("the well-formed answer was not recognized: %+v", p)
		}
		if p.Available && !wellFormed {
			t.Fatalf("answer %x reported as NAT-PMP: %+v", b, p)
		}
		if p.Available {
			if want := netip.AddrFrom4([4]byte(b[8:12])).String(); p.ExternalIP != want {
				t.Fatalf("external IP %s, the answer says %s", p.ExternalIP, want)
			}
		}
	})
}
