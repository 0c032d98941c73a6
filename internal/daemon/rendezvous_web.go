package daemon

import (
	"log/slog"
	"net/http"

	"github.com/punchd/punchd/internal/peerjs"
	"github.com/punchd/punchd/internal/rendezvous"
	"github.com/punchd/punchd/internal/turnrest"
	"github.com/punchd/punchd/internal/weborigin"
)

// webHandler adds what web apps use to the signaling handler: TURN
// credentials at /turn-credentials and PeerJS signaling at /peerjs, both
// only for the origins of --web-origin (and off without it).
func webHandler(cfg RendezvousConfig, signaling http.Handler, stunPort int, turnCfg *rendezvous.TURNConfig, log *slog.Logger) (http.Handler, func(), error) {
	origins, err := weborigin.Parse(cfg.WebOrigins)
	if err != nil {
		return nil, nil, err
	}
	var keys [][]byte
	if cfg.WebAPIKeyFile != "" {
		if keys, err = turnrest.ReadAPIKeys(cfg.WebAPIKeyFile); err != nil {
			return nil, nil, err
		}
		if origins.Empty() {
			log.Warn("--web-api-key-file has no effect without --web-origin: /turn-credentials is off")
		}
	}
	if origins.Empty() {
		return signaling, func() {}, nil
	}
	mux := http.NewServeMux()
	mux.Handle("/", signaling)
	pj := peerjs.New(peerjs.Config{Origins: origins, Logger: log.With("component", "peerjs")})
	mux.Handle(peerjs.Path, pj)
	mux.Handle(peerjs.Path+"/", pj)
	if turnCfg != nil {
		mux.Handle(turnrest.Path, turnrest.New(turnrest.Config{
			Secret: turnCfg.Secret, TTL: cfg.WebCredentialTTL, Origins: origins, APIKeys: keys,
			STUNPort: stunPort, UDPPort: turnCfg.UDPPort, TCPPort: turnCfg.TCPPort, TLSPort: turnCfg.TLSPort,
			Logger: log.With("component", "turn-credentials"),
		}))
	} else {
		log.Warn("/turn-credentials is off: the TURN relay is off (--no-turn or no --stun-listen)")
		mux.HandleFunc(turnrest.Path, func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "this rendezvous runs no TURN relay", http.StatusNotFound)
		})
	}
	log.Info("web apps served", "origins", origins.Origins(), "peerjs", peerjs.Path, "turn_credentials", turnCfg != nil)
	return mux, func() { _ = pj.Close() }, nil
}
