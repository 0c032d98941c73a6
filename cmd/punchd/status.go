package main

import (
	"encoding/json"
	"time"

	"github.com/spf13/cobra"

	"github.com/punchd/punchd/internal/control"
)

func newStatusCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Ask the running daemon about its peers: state, path, candidates, bytes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			st, err := control.GetStatus(cmd.Context(), s.controlSocket())
			if err != nil {
				return err
			}
			if s.v.GetBool("json") {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return st.WriteTable(cmd.OutOrStdout(), time.Now())
		},
	}
	addCommonFlags(cmd.Flags())
	addStateFlags(cmd.Flags())
	cmd.Flags().Bool("json", false, "print JSON instead of a table")
	return cmd
}
