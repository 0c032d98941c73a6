package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/network"
)

func newNetworkCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Make a network friends join with one code (`punchd up --network CODE`)",
		Args:  cobra.NoArgs,
	}
	newCmd := &cobra.Command{
		Use:   "new --rendezvous URL",
		Short: "Make a new network and print its code (the last line is the code alone)",
		Long: `Make a new network and print its code: the rendezvous URL and a fresh
128-bit secret. Everyone who runs "punchd up --network CODE" joins, and every
member links with every other. Share the code like a password: whoever has it
is a member. To shut someone out, make a new code and have the others use it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			code, err := network.New(s.str("rendezvous"))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(),
				"New network on %s. Every member runs, as root:\n  punchd up --network %s\nShare the code like a password; a new code shuts out whoever lacks it.\n%s\n",
				code.Rendezvous, code, code)
			return err
		},
	}
	addCommonFlags(newCmd.Flags())
	newCmd.Flags().String("rendezvous", "", "rendezvous URL the members meet at, e.g. http://rendezvous.example:8478 (https:// for TLS)")
	cmd.AddCommand(newCmd)
	return cmd
}
