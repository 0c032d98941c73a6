package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/punchd/punchd/internal/identity"
	"github.com/punchd/punchd/internal/secret"
)

// defaultConfigFile is read when it exists and --config is not given.
const defaultConfigFile = "/etc/punchd/punchd.yaml"

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "punchd",
		Short: "A plain IP link between machines across any NATs",
		Long: `punchd links two (or a few) machines with WireGuard across NATs.
Each host runs "punchd up --peer ID"; the daemons meet at a rendezvous
("punchd rendezvous"), punch a UDP hole with ICE and bring up punch0.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newIDCommand(), newUpCommand(), newRendezvousCommand(), newStatusCommand(), newPingCommand(), newNATCommand(), newNetworkCommand(), newVersionCommand())
	return root
}

// settings reads one command's options: flags > PUNCHD_* environment >
// config file > defaults. Each command gets its own viper instance so no
// state is shared between commands (or tests).
type settings struct {
	v    *viper.Viper
	file string // the config file actually read, if any
}

// fileOnlyKeys are the keys a config file may hold besides the flags of the
// commands; anything else is a typo the user wants to hear about.
func fileOnlyKeys() []string { return []string{"peers"} }

func addCommonFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "config file (default "+defaultConfigFile+" when it exists)")
	fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.String("log-format", "text", "log format: text or json")
}

func loadSettings(cmd *cobra.Command) (*settings, error) {
	v := viper.New()
	v.SetEnvPrefix("PUNCHD")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(cmd.Flags()); err != nil {
		return nil, err
	}
	s := &settings{v: v}
	file := v.GetString("config")
	explicit := file != ""
	if !explicit {
		if _, err := os.Stat(defaultConfigFile); err == nil {
			file = defaultConfigFile
		}
	}
	if file == "" {
		return s, nil
	}
	v.SetConfigFile(file)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("config file %s not found: %w", file, err)
		}
		return nil, fmt.Errorf("bad config file %s: %w", file, err)
	}
	s.file = file
	// Reject unknown keys: a misspelt "rendezvouz:" silently ignored would
	// cost the user an evening.
	fileKeys := viper.New()
	fileKeys.SetConfigFile(file)
	fileKeys.SetConfigType("yaml")
	if err := fileKeys.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("bad config file %s: %w", file, err)
	}
	known := knownKeys(cmd)
	for _, k := range fileKeys.AllKeys() {
		top := strings.SplitN(k, ".", 2)[0]
		if !slices.Contains(known, top) {
			return nil, fmt.Errorf("bad config file %s: unknown key %q (known: %s)", file, top, strings.Join(known, ", "))
		}
	}
	return s, nil
}

// knownKeys is every flag of every command plus the file-only keys, so one
// config file can serve `up`, `status` and `rendezvous` alike.
func knownKeys(cmd *cobra.Command) []string {
	keys := fileOnlyKeys()
	for _, c := range cmd.Root().Commands() {
		c.Flags().VisitAll(func(f *pflag.Flag) { keys = append(keys, f.Name) })
		for _, sub := range c.Commands() {
			sub.Flags().VisitAll(func(f *pflag.Flag) { keys = append(keys, f.Name) })
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func (s *settings) str(key string) string { return s.v.GetString(key) }

// secret reads a secret option: --NAME, PUNCHD_NAME or the config file,
// or the file --NAME-file names; warnings say what is unsafe about how it
// was given (see package secret).
func (s *settings) secret(cmd *cobra.Command, name string) (string, []string, error) {
	in := secret.Input{Name: name, Value: s.str(name), File: s.str(name + "-file")}
	_, inEnv := os.LookupEnv("PUNCHD_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")))
	switch {
	case cmd.Flags().Changed(name):
		in.Origin = secret.CommandLine
	case inEnv:
		in.Origin = secret.Environment
	case s.file != "" && s.v.InConfig(name):
		in.Origin, in.ConfigPath = secret.ConfigFile, s.file
	}
	return in.Resolve()
}

// warnKeyFile logs when the private key in the state directory is readable
// by group or others.
func (s *settings) warnKeyFile(log *slog.Logger) {
	if w := identity.KeyFileWarning(s.stateDir()); w != "" {
		log.Warn(w)
	}
}

// list reads a repeatable option. From a flag or the config file it is a
// list already; from the environment it is one string, split on commas or
// white space.
func (s *settings) list(key string) []string {
	var out []string
	for _, item := range s.v.GetStringSlice(key) {
		out = append(out, strings.FieldsFunc(item, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' })...)
	}
	return out
}

func (s *settings) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.str("log-level"))); err != nil {
		return nil, fmt.Errorf("bad --log-level %q: use debug, info, warn or error", s.str("log-level"))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch s.str("log-format") {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("bad --log-format %q: use text or json", s.str("log-format"))
	}
}

// defaultStateDir is /var/lib/punchd as root, the user's
// config directory otherwise (so `punchd id` works without root).
func defaultStateDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/punchd"
	}
	if dir, err := os.UserConfigDir(); err == nil {
		return filepath.Join(dir, "punchd")
	}
	return ".punchd"
}

func addStateFlags(fs *pflag.FlagSet) {
	fs.String("state-dir", "", "directory holding the private key and the control socket (default "+defaultStateDir()+")")
	fs.String("control-socket", "", "control socket path (default <state-dir>/punchd.sock)")
}

func (s *settings) stateDir() string {
	if d := s.str("state-dir"); d != "" {
		return d
	}
	return defaultStateDir()
}

func (s *settings) controlSocket() string {
	if p := s.str("control-socket"); p != "" {
		return p
	}
	return filepath.Join(s.stateDir(), "punchd.sock")
}
