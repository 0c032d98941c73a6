package identity

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"net/netip"
)

// Default overlay prefixes. 10.188.0.0/16 is rarely used by home LANs;
// fd50:756e:6368::/48 is a ULA ("Punch" in its bytes).
var (
	DefaultOverlayIPv4 = netip.MustParsePrefix("10.188.0.0/16")
	DefaultOverlayIPv6 = netip.MustParsePrefix("fd50:756e:6368::/48")
)

// OverlayAddr derives pub's address inside prefix. Both ends compute it from
// the key alone. The host part comes from a domain-separated hash of the key;
// the network address, and for IPv4 the broadcast address, are never used
// (the next hash value is tried instead).
func OverlayAddr(prefix netip.Prefix, pub PublicKey) (netip.Addr, error) {
	if !prefix.IsValid() {
		return netip.Addr{}, fmt.Errorf("invalid overlay prefix")
	}
	prefix = prefix.Masked()
	bits := prefix.Addr().BitLen()
	hostBits := bits - prefix.Bits()
	if hostBits < 2 {
		return netip.Addr{}, fmt.Errorf("overlay prefix %s leaves %d host bits; use a prefix with at least 2 (e.g. /30 or shorter)", prefix, hostBits)
	}
	base := new(big.Int).SetBytes(prefix.Addr().AsSlice())
	size := new(big.Int).Lsh(big.NewInt(1), uint(hostBits))
	last := new(big.Int).Sub(size, big.NewInt(1))
	for counter := uint32(0); counter < 64; counter++ {
		var in []byte
		in = append(in, "punchd overlay v1\x00"...)
		in = append(in, pub[:]...)
		in = binary.BigEndian.AppendUint32(in, counter)
		h := sha256.Sum256(in)
		host := new(big.Int).Mod(new(big.Int).SetBytes(h[:]), size)
		if host.Sign() == 0 || (prefix.Addr().Is4() && host.Cmp(last) == 0) {
			continue
		}
		b := new(big.Int).Add(base, host).FillBytes(make([]byte, bits/8))
		a, _ := netip.AddrFromSlice(b)
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("overlay prefix %s: no usable address for key %s", prefix, pub.Short())
}
