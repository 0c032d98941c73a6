package rendezvous

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"time"
)

// TURNCredentials makes TURN credentials in coturn's REST format
// (draft-uberti-behave-turn-rest): username "expiry:id", password
// base64(HMAC-SHA1(secret, username)). Any relay that shares the secret —
// punchd's own or coturn with use-auth-secret — accepts them until expiry.
func TURNCredentials(secret, id string, ttl time.Duration) (username, password string, err error) {
	username = strconv.FormatInt(time.Now().Add(ttl).Unix(), 10) + ":" + id
	mac := hmac.New(sha1.New, []byte(secret))
	if _, err := mac.Write([]byte(username)); err != nil {
		return "", "", err
	}
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}
