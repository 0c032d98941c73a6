// Package secret reads secrets (a TURN shared secret, a password) the way
// that keeps them out of sight: from a file or the environment rather than
// the command line, where every local user sees them in ps and
// /proc/PID/cmdline. It says what is unsafe about how a secret was given
// instead of refusing it, so an existing setup keeps working while its
// owner is told how to fix it.
package secret

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// maxFileSize bounds what is read from a secret file: a secret is a line,
// a file of megabytes is a mistake (the wrong path).
const maxFileSize = 64 << 10

// Origin is where a value given directly (not as a file) came from.
type Origin int

const (
	Unset       Origin = iota
	CommandLine        // --NAME VALUE: visible in ps
	Environment        // PUNCHD_NAME
	ConfigFile         // NAME: in the config file
)

// Input describes one secret option: the value given directly and where it
// came from, and the path given with --NAME-file.
type Input struct {
	Name       string // the option's name, e.g. "turn-secret"
	Value      string
	Origin     Origin
	ConfigPath string // the config file, when Origin is ConfigFile
	File       string // the --NAME-file path; empty when not given
}

// Resolve returns the secret and warnings about how it was given: on the
// command line, or in a file (the secret file or the config file) that
// group or others may read. Giving both a value and a file is an error.
func (in Input) Resolve() (value string, warnings []string, err error) {
	if in.File != "" && in.Value != "" {
		return "", nil, fmt.Errorf("both --%s and --%s-file are given: use one (the file keeps the secret out of ps)", in.Name, in.Name)
	}
	if in.File != "" {
		v, w, err := ReadFile(in.File)
		if err != nil {
			return "", nil, fmt.Errorf("--%s-file: %w", in.Name, err)
		}
		if w != "" {
			warnings = append(warnings, w)
		}
		return v, warnings, nil
	}
	switch in.Origin {
	case CommandLine:
		if in.Value != "" {
			warnings = append(warnings, fmt.Sprintf("--%s on the command line is visible to every local user (ps, /proc): use --%s-file FILE (mode 0600) or the environment variable PUNCHD_%s",
				in.Name, in.Name, strings.ToUpper(strings.ReplaceAll(in.Name, "-", "_"))))
		}
	case ConfigFile:
		if w, _ := ReadableByOthers(in.ConfigPath); w != "" && in.Value != "" {
			warnings = append(warnings, fmt.Sprintf("%s holds %s: %s", in.ConfigPath, in.Name, w))
		}
	}
	return in.Value, warnings, nil
}

// ReadFile reads a secret from path: its content without the trailing
// newline. warning is non-empty when group or others can read the file.
func ReadFile(path string) (value, warning string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("read secret: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", "", fmt.Errorf("read secret %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxFileSize {
		return "", "", fmt.Errorf("read secret %s: not a regular file of at most %d bytes", path, maxFileSize)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && fi.Size() > 0 {
		return "", "", fmt.Errorf("read secret %s: %w", path, err)
	}
	value = strings.TrimRight(string(b), "\r\n")
	if value == "" {
		return "", "", fmt.Errorf("secret file %s is empty", path)
	}
	return value, permWarning(path, fi.Mode()), nil
}

// ReadableByOthers returns a warning when group or others may read path
// (a private key, a secret); "" when only the owner may, or path is gone.
func ReadableByOthers(path string) (string, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return permWarning(path, fi.Mode()), nil
}

func permWarning(path string, mode fs.FileMode) string {
	if mode.Perm()&0o044 == 0 {
		return ""
	}
	who := "others"
	if mode.Perm()&0o004 == 0 {
		who = "its group"
	}
	return fmt.Sprintf("%s is readable by %s (mode %04o): chmod 600 %s", path, who, mode.Perm(), path)
}
