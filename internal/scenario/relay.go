package scenario

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/punchd/punchd/internal/lab"
)

// setupRelay prepares the relay the run asks for, before the rendezvous
// starts.
func (r *Run) setupRelay(ctx context.Context) error {
	switch r.opts.Relay {
	case "":
		return nil
	case "tls":
		cert, key, err := SelfSigned(r.opts.Dir, r.R.Addr.String())
		if err != nil {
			return err
		}
		r.rvArgs = []string{"--tls-cert", cert, "--tls-key", key,
			"--turn-tls-listen", net.JoinHostPort(r.R.Addr.String(), "5349"),
			// TCP relay only on loopback: from the lab, TLS is what is left.
			"--turn-tcp-listen", "127.0.0.1:3478"}
		// Go (signaling and pion's TURN client) trusts the lab CA this way.
		r.env = []string{"SSL_CERT_FILE=" + cert}
		return nil
	case "443":
		cert, key, err := SelfSigned(r.opts.Dir, r.R.Addr.String())
		if err != nil {
			return err
		}
		tls := net.JoinHostPort(r.R.Addr.String(), "443")
		r.rvArgs = []string{"--tls-cert", cert, "--tls-key", key, "--turn-tls-listen", tls}
		r.env = []string{"SSL_CERT_FILE=" + cert}
		return nil
	case "coturn", "coturn-tls":
		ip := r.R.Extra[0].String()
		// coturn holds the second address: no RFC 5780 alternate there.
		r.rvArgs = []string{"--no-turn", "--stun-alt-ip", "none"}
		// The secret from a file, as a user should give it (an argument
		// shows in ps, and punchd warns).
		secretFile := filepath.Join(r.opts.Dir, "coturn-secret")
		if err := os.WriteFile(secretFile, []byte(coturnSecret+"\n"), 0o600); err != nil {
			return err
		}
		r.upArgs = []string{"--turn", "turn:" + ip + ":3478", "--turn", "turn:" + ip + ":3478?transport=tcp", "--turn-secret-file", secretFile}
		tlsArgs := []string{"--no-tls"}
		if r.opts.Relay == "coturn-tls" {
			// TLS only, as own-TURN "tls" runs: what a client behind a
			// UDP-blocking firewall that allows 443 gets.
			cert, key, err := SelfSigned(r.opts.Dir, ip)
			if err != nil {
				return err
			}
			r.upArgs = []string{"--turn", "turns:" + ip + ":5349", "--turn-secret-file", secretFile}
			r.env = []string{"SSL_CERT_FILE=" + cert}
			tlsArgs = []string{"--cert=" + cert, "--pkey=" + key, "--tls-listening-port=5349"}
		}
		cmd := r.R.Command(context.Background(), "turnserver", append(append([]string{"-n", "--no-cli", "--no-dtls"}, tlsArgs...),
			"--use-auth-secret", "--static-auth-secret="+coturnSecret, "--realm=punchd",
			"--listening-ip="+ip, "--relay-ip="+ip, "--listening-port=3478",
			"--log-file=stdout", "--simple-log")...)
		logf, err := os.Create(filepath.Join(r.opts.Dir, "coturn.log"))
		if err != nil {
			return err
		}
		defer logf.Close()
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start coturn: %w (apt-get install coturn)", err)
		}
		r.coturn = cmd
		return lab.WaitUDPBound(ctx, r.R, ip+":3478")
	default:
		return fmt.Errorf("unknown relay %q", r.opts.Relay)
	}
}

// SelfSigned writes a certificate for ip (its own CA) and its key.
func SelfSigned(dir, ip string) (certPath, keyPath string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "punchd lab rendezvous"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP(ip)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, "lab-cert.pem"), filepath.Join(dir, "lab-key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}
