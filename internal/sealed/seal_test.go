package sealed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/punchd/punchd/internal/identity"
)

// acceptOnly is a sealer's accepted set of fixed keys.
func acceptOnly(keys ...identity.PrivateKey) func(identity.PublicKey) bool {
	set := make(map[identity.PublicKey]bool, len(keys))
	for _, k := range keys {
		set[k.PublicKey()] = true
	}
	return func(k identity.PublicKey) bool { return set[k] }
}

func mustSeal(t testing.TB, s *Sealer, to identity.PublicKey, payload []byte, now time.Time) []byte {
	t.Helper()
	b, err := s.Seal(to, payload, now)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealing(t *testing.T) {
	ka, kb, kc := newKey(t), newKey(t), newKey(t)
	everyone := acceptOnly(ka, kb, kc)
	sa, sb, sc := NewSealer(ka, everyone), NewSealer(kb, everyone), NewSealer(kc, everyone)
	now := time.Now()
	secret := []byte("ufrag=abcd pwd=supersecretsupersecret")
	sealed := mustSeal(t, sa, kb.PublicKey(), secret, now)
	if bytes.Contains(sealed, secret) {
		t.Fatal("plaintext visible in sealed message")
	}
	if len(sealed) != len(secret)+Overhead {
		t.Fatalf("sealed %d bytes, want %d", len(sealed), len(secret)+Overhead)
	}
	got, err := sb.Open(ka.PublicKey(), sealed, now)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open: %q %v", got, err)
	}
	tampered := mustSeal(t, sa, kb.PublicKey(), secret, now)
	tampered[len(tampered)-1] ^= 1
	wrongVersion := mustSeal(t, sa, kb.PublicKey(), secret, now)
	wrongVersion[0] = 1
	cases := []struct {
		name   string
		opener *Sealer
		from   identity.PublicKey
		msg    []byte
		now    time.Time
		want   error
	}{
		{"replayed", sb, ka.PublicKey(), sealed, now, ErrReplay},
		{"third party", sc, ka.PublicKey(), sealed, now, errSealOpen},
		{"claimed sender", sb, kc.PublicKey(), mustSeal(t, sa, kb.PublicKey(), secret, now), now, errSealOpen},
		{"tampered", sb, ka.PublicKey(), tampered, now, errSealOpen},
		{"version 1", sb, ka.PublicKey(), wrongVersion, now, errSealFormat},
		{"stale", sb, ka.PublicKey(), mustSeal(t, sa, kb.PublicKey(), secret, now.Add(-time.Hour)), now, ErrReplay},
		{"future", sb, ka.PublicKey(), mustSeal(t, sa, kb.PublicKey(), secret, now.Add(time.Hour)), now, ErrReplay},
		{"short", sb, ka.PublicKey(), []byte("short"), now, errSealFormat},
		{"unknown sender", NewSealer(kb, acceptOnly(kc)), ka.PublicKey(), mustSeal(t, sa, kb.PublicKey(), secret, now), now, ErrUnknownSender},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.opener.Open(c.from, c.msg, c.now); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// Signals are sent from several goroutines; the later counter may arrive
// first. Each still opens once, and only once.
func TestSealingOutOfOrder(t *testing.T) {
	ka, kb := newKey(t), newKey(t)
	sa, sb := NewSealer(ka, nil), NewSealer(kb, acceptOnly(ka))
	now := time.Now()
	m1 := mustSeal(t, sa, kb.PublicKey(), []byte("one"), now)
	m2 := mustSeal(t, sa, kb.PublicKey(), []byte("two"), now)
	for i, m := range [][]byte{m2, m1} {
		if _, err := sb.Open(ka.PublicKey(), m, now); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	for i, m := range [][]byte{m1, m2} {
		if _, err := sb.Open(ka.PublicKey(), m, now); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay %d: %v", i, err)
		}
	}
}

// Finding 1, first attack: a hostile rendezvous offers B's public key as
// its "server key" and a nonce copied from a recorded A->B message. With
// NaCl box, A's registration proof was then a second box under the A<->B
// key and nonce, and proof XOR known statement gave the keystream of the
// recorded message. Now the proof is a Noise X message whose keys come
// from a different key schedule: the same XOR yields nothing.
func TestAttackHostileServerCannotDecrypt(t *testing.T) {
	ka, kb := newKey(t), newKey(t)
	sa := NewSealer(ka, nil)
	now := time.Now()
	secret := []byte(`{"type":"offer","ufrag":"abcd","pwd":"supersecretsupersecretsupersecret"}`)
	rec := mustSeal(t, sa, kb.PublicKey(), secret, now)
	bpub, apub := kb.PublicKey(), ka.PublicKey()
	var session [8]byte
	binary.BigEndian.PutUint64(session[:], sa.session)
	// The server may copy any 32 bytes of the message as the "nonce".
	for off := 0; off+ChallengeNonce <= len(rec); off++ {
		proof, err := Prove(ka, bpub[:], rec[off:off+ChallengeNonce])
		if err != nil {
			t.Fatal(err)
		}
		// Known plaintext of the proof: A's public key, encrypted right
		// after the ephemeral. Apply that keystream to the recorded
		// message at every position.
		var ks [32]byte
		for i := range ks {
			ks[i] = proof[32+i] ^ apub[i]
		}
		for q := 0; q+len(ks) <= len(rec); q++ {
			var guess [32]byte
			for i := range guess {
				guess[i] = rec[q+i] ^ ks[i]
			}
			if bytes.Contains(guess[:], session[:]) || bytes.Contains(guess[:], secret[:8]) {
				t.Fatalf("nonce at %d, keystream at %d: the hostile server read the sealed message: %q", off, q, guess)
			}
		}
	}
}

// Finding 1, second attack: a hostile rendezvous forges short messages
// (a hello with failed:true restarts ICE; a false nat type) from A to B,
// using everything it can get: recorded messages, A's registration proofs
// for challenges of its choosing (B's key as server key), its own keys.
func TestAttackHostileServerCannotForge(t *testing.T) {
	ka, kb, kserver := newKey(t), newKey(t), newKey(t)
	sa := NewSealer(ka, nil)
	now := time.Now()
	bpub, apub := kb.PublicKey(), ka.PublicKey()
	recorded := []byte(`{"type":"hello","failed":false}`)
	rec := mustSeal(t, sa, bpub, recorded, now)
	proof, err := Prove(ka, bpub[:], rec[1:33])
	if err != nil {
		t.Fatal(err)
	}
	for _, forged := range [][]byte{
		[]byte(`{"type":"hello","failed":true}`),
		[]byte(`{"type":"nat","nat":"symmetric"}`),
	} {
		// Keystream from the proof (known plaintext: A's key) applied to
		// the recorded message, tag kept.
		bitflip := append([]byte(nil), rec...)
		for i := 0; i < len(forged) && 33+sealHeader+i < len(bitflip)-16; i++ {
			bitflip[33+sealHeader+i] ^= recorded[i] ^ forged[i]
		}
		viaKeystream := append([]byte(nil), rec...)
		for i := 0; i < 32 && 33+i < len(viaKeystream); i++ {
			viaKeystream[33+i] = proof[32+i] ^ apub[i] ^ viaKeystream[33+i]
		}
		attempts := map[string][]byte{
			"proof as message":         append([]byte{sealVersion}, proof...),
			"bit flips under tag":      bitflip,
			"proof keystream":          viaKeystream,
			"sealed with server's key": mustSeal(t, NewSealer(kserver, nil), bpub, forged, now),
		}
		for name, msg := range attempts {
			sb := NewSealer(kb, acceptOnly(ka))
			if got, err := sb.Open(apub, msg, now); err == nil {
				t.Fatalf("%s: B accepted a forged message from A: %q", name, got)
			}
		}
	}
}

// Finding 1, third attack: a message A sent to B, reflected back to A as
// if B had sent it. NaCl box uses one key for both directions, so it
// opened; the K pattern and the prologue bind the direction.
func TestAttackReflectionRefused(t *testing.T) {
	ka, kb := newKey(t), newKey(t)
	sa := NewSealer(ka, acceptOnly(kb))
	now := time.Now()
	rec := mustSeal(t, sa, kb.PublicKey(), []byte(`{"type":"hello","failed":true}`), now)
	if got, err := sa.Open(kb.PublicKey(), rec, now); !errors.Is(err, errSealOpen) {
		t.Fatalf("A accepted its own message reflected as from B: %q %v", got, err)
	}
}

// Finding 2: strangers cannot flush replay memory. Ten thousand messages
// from keys B does not accept leave no state behind, and a replayed
// message from A is still refused. 4,200 of them are validly sealed by
// their own keys (the old sealer opened those and wiped all replay memory
// at 4,096 senders); the rest only claim a fresh key (sealing costs four
// X25519 operations each, which would make this test slow on a loaded
// machine without testing more).
func TestReplayRefusedAfterStrangerFlood(t *testing.T) {
	ka, kb := newKey(t), newKey(t)
	sa, sb := NewSealer(ka, nil), NewSealer(kb, acceptOnly(ka))
	now := time.Now()
	msg := mustSeal(t, sa, kb.PublicKey(), []byte("offer"), now)
	if _, err := sb.Open(ka.PublicKey(), msg, now); err != nil {
		t.Fatal(err)
	}
	for i := range 10_000 {
		var from identity.PublicKey
		stranger := msg
		if i < 4_200 {
			k := newKey(t)
			from = k.PublicKey()
			stranger = mustSeal(t, NewSealer(k, nil), kb.PublicKey(), []byte("junk"), now)
		} else {
			randRead(from[:])
		}
		if _, err := sb.Open(from, stranger, now); !errors.Is(err, ErrUnknownSender) {
			t.Fatalf("stranger %d: %v", i, err)
		}
	}
	if n := len(sb.seen); n != 1 {
		t.Fatalf("replay state for %d peers, want 1 (A only)", n)
	}
	if _, err := sb.Open(ka.PublicKey(), msg, now); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay after the flood: %v", err)
	}
}

// The accepted set may grow at run time (group members learned later).
func TestAcceptedSetIsDynamic(t *testing.T) {
	ka, kb := newKey(t), newKey(t)
	accepted := false
	sa, sb := NewSealer(ka, nil), NewSealer(kb, func(k identity.PublicKey) bool { return accepted && k == ka.PublicKey() })
	now := time.Now()
	msg := mustSeal(t, sa, kb.PublicKey(), []byte("hi"), now)
	if _, err := sb.Open(ka.PublicKey(), msg, now); !errors.Is(err, ErrUnknownSender) {
		t.Fatalf("before: %v", err)
	}
	accepted = true
	if _, err := sb.Open(ka.PublicKey(), msg, now); err != nil {
		t.Fatalf("after: %v", err)
	}
}

// FuzzOpen: opening arbitrary bytes never panics, and nothing but the one
// valid message opens (the seed corpus is that message, so the fuzzer
// mutates it).
func FuzzOpen(f *testing.F) {
	ka, kb := newKey(f), newKey(f)
	at := time.Unix(1_700_000_000, 0)
	valid, err := NewSealer(ka, nil).Seal(kb.PublicKey(), []byte(`{"type":"hello","failed":false}`), at)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add([]byte{sealVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		sb := NewSealer(kb, acceptOnly(ka))
		got, err := sb.Open(ka.PublicKey(), b, at)
		if err == nil && !bytes.Equal(b, valid) {
			t.Fatalf("a message that is not the sealed one opened: %q", got)
		}
	})
}

// Signaling costs (not a data path): go test -run XXX -bench 'Seal|Open|Registration' ./internal/rendezvous/
func BenchmarkSeal(b *testing.B) {
	ka, kb := newKey(b), newKey(b)
	sa := NewSealer(ka, nil)
	payload := make([]byte, 512)
	now := time.Now()
	to := kb.PublicKey()
	for b.Loop() {
		if _, err := sa.Seal(to, payload, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	ka, kb := newKey(b), newKey(b)
	sa, sb := NewSealer(ka, nil), NewSealer(kb, acceptOnly(ka))
	payload := make([]byte, 512)
	now := time.Now()
	msgs := make([][]byte, b.N)
	for i := range msgs {
		msgs[i] = mustSeal(b, sa, kb.PublicKey(), payload, now)
	}
	from := ka.PublicKey()
	b.ResetTimer()
	for i := range b.N {
		if _, err := sb.Open(from, msgs[i], now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenUnknownSender(b *testing.B) {
	ka, kb := newKey(b), newKey(b)
	sb := NewSealer(kb, acceptOnly())
	msg := mustSeal(b, NewSealer(ka, nil), kb.PublicKey(), make([]byte, 512), time.Now())
	now := time.Now()
	from := ka.PublicKey()
	for b.Loop() {
		_, _ = sb.Open(from, msg, now)
	}
}

func BenchmarkRegistration(b *testing.B) {
	k := newKey(b)
	pub := k.PublicKey()
	for b.Loop() {
		ch, err := NewChallenge()
		if err != nil {
			b.Fatal(err)
		}
		proof, err := Prove(k, ch.ServerKey(), ch.Nonce())
		if err != nil {
			b.Fatal(err)
		}
		if err := ch.Verify(pub, proof); err != nil {
			b.Fatal(err)
		}
	}
}

func newKey(t testing.TB) identity.PrivateKey {
	t.Helper()
	k, err := identity.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
