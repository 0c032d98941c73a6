package daemon

import (
	"log/slog"
	"net/http"

	"github.com/punchd/punchd/internal/peerjs"
	"github.com/punchd/punchd/internal/rendezvous"
	"github.com/punchd/punchd/internal/turnrest"
	"github.com/punchd/punchd/internal/weborigin"
)

// webApps is the signaling listener's handler with what web apps use
// added: TURN credentials at /turn-credentials and PeerJS signaling at
// /peerjs, both only for the origins of --web-origin (and off without it).
type webApps struct {
	Handler http.Handler
	peerjs  *peerjs.Server    // nil when off
	creds   *turnrest.Handler // nil when off
}

// Rejected counts what both refused, by cause.
func (w *webApps) Rejected() map[string]uint64 {
	out := map[string]uint64{}
	if w.peerjs != nil {
		for k, v := range w.peerjs.Rejected() {
			out[k] = v
		}
	}
	if w.creds != nil {
		for k, v := range w.creds.Rejected() {
			out[k] = v
		}
	}
	return out
}

// PeerJSOnline is how many browsers are registered at /peerjs.
func (w *webApps) PeerJSOnline() int {
	if w.peerjs == nil {
		return 0
	}
	return w.peerjs.Online()
}

// Close ends the PeerJS sessions.
func (w *webApps) Close() {
	if w.peerjs != nil {
		_ = w.peerjs.Close()
	}
}

func newWebApps(cfg RendezvousConfig, signaling http.Handler, stunPort int, turnCfg *rendezvous.TURNConfig, log *slog.Logger) (*webApps, error) {
	origins, err := weborigin.Parse(cfg.WebOrigins)
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	if cfg.WebAPIKeyFile != "" {
		if keys, err = turnrest.ReadAPIKeys(cfg.WebAPIKeyFile); err != nil {
			return nil, err
		}
		if origins.Empty() {
			log.Warn("--web-api-key-file has no effect without --web-origin: /turn-credentials is off")
		}
	}
	if origins.Empty() {
		return &webApps{Handler: signaling}, nil
	}
	mux := http.NewServeMux()
	mux.Handle("/", signaling)
	pj := peerjs.New(peerjs.Config{Origins: origins, Logger: log.With("component", "peerjs")})
	mux.Handle(peerjs.Path, pj)
	mux.Handle(peerjs.Path+"/", pj)
	web := &webApps{Handler: mux, peerjs: pj}
	if turnCfg != nil {
		web.creds = turnrest.New(turnrest.Config{
			Secret: turnCfg.Secret, TTL: cfg.WebCredentialTTL, Origins: origins, APIKeys: keys,
			STUNPort: stunPort, UDPPort: turnCfg.UDPPort, TCPPort: turnCfg.TCPPort, TLSPort: turnCfg.TLSPort,
			Logger: log.With("component", "turn-credentials"),
		})
		mux.Handle(turnrest.Path, web.creds)
	} else {
		log.Warn("/turn-credentials is off: the TURN relay is off (--no-turn or no --stun-listen)")
		mux.HandleFunc(turnrest.Path, func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "this rendezvous runs no TURN relay", http.StatusNotFound)
		})
	}
	log.Info("web apps served", "origins", origins.Origins(), "peerjs", peerjs.Path, "turn_credentials", turnCfg != nil)
	return web, nil
}
