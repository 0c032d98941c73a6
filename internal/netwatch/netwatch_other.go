//go:build !linux

package netwatch

// Open reports ErrUnsupported: only Linux has a watcher so far.
func Open(Config) (*Watcher, error) { return nil, ErrUnsupported }
