// Package apply is `graylanectl apply -f FILE`: create or update services
// from manifests, all or nothing.
package apply

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
)

// New returns the apply command.
func New(env *cli.Env) *cobra.Command {
	var file string
	var wait cli.Wait
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update services from manifests (all or nothing)",
		Long: `Sends the manifests in FILE ("-" reads standard input), Service and
CanaryRelease documents separated by ---, to the cluster. Either every
manifest is applied or, when one is wrong, none is: the answer names the
file's line and field. Prints the raft index the change was committed at.`,
		Example: "  graylanectl apply -f auth.yaml --wait\n  cat *.yaml | graylanectl apply -f -",
		Args:    cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return cli.Usagef("apply: give the manifests with -f FILE (or -f - for standard input)")
			}
			opts, err := wait.Options()
			if err != nil {
				return err
			}
			data, err := read(env.In, file)
			if err != nil {
				return err
			}
			c, err := env.Connect(wait.MinTimeout())
			if err != nil {
				return err
			}
			w, err := c.Apply(cmd.Context(), data, opts)
			if err != nil {
				return env.Explain(err)
			}
			return env.Wrote("applied "+displayName(file), w, wait.On)
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", `manifests file ("-": standard input)`)
	wait.AddFlags(cmd)
	return cmd
}

func read(stdin io.Reader, file string) ([]byte, error) {
	if file == "-" {
		data, err := io.ReadAll(io.LimitReader(stdin, 8<<20))
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return data, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &cli.UsageError{Err: fmt.Errorf("apply: %w", err)}
	}
	return data, nil
}

func displayName(file string) string {
	if file == "-" {
		return "standard input"
	}
	return file
}
