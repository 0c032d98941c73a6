package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/identity"
)

func newIDCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "id",
		Short: "Print this host's peer ID (creating its key on first use)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			key, created, err := identity.LoadOrCreate(s.stateDir())
			if err != nil {
				return err
			}
			if created {
				fmt.Fprintf(os.Stderr, "created a new key in %s\n", s.stateDir())
			}
			if w := identity.KeyFileWarning(s.stateDir()); w != "" {
				fmt.Fprintln(os.Stderr, "warning: "+w)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), key.PublicKey().String())
			return err
		},
	}
	addCommonFlags(cmd.Flags())
	addStateFlags(cmd.Flags())
	return cmd
}
