// Package root is graylanectl's top command: the global flags, the client
// they describe, and the subcommands.
package root

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/apply"
	"github.com/graylane/graylane/ctl/audit"
	"github.com/graylane/graylane/ctl/capture"
	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/completion"
	"github.com/graylane/graylane/ctl/explain"
	"github.com/graylane/graylane/ctl/flows"
	"github.com/graylane/graylane/ctl/get"
	"github.com/graylane/graylane/ctl/members"
	"github.com/graylane/graylane/ctl/mirror"
	"github.com/graylane/graylane/ctl/pin"
	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/ctl/remove"
	"github.com/graylane/graylane/ctl/replay"
	"github.com/graylane/graylane/ctl/rollout"
	"github.com/graylane/graylane/ctl/setweight"
	"github.com/graylane/graylane/ctl/shadow"
	"github.com/graylane/graylane/ctl/status"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/version"
)

// TokenEnv is the environment variable --token defaults to.
const TokenEnv = cli.TokenEnv

// New returns graylanectl with its subcommands. getenv reads the
// environment (os.Getenv, or a map in tests).
func New(in io.Reader, out, errOut io.Writer, getenv func(string) string) *cobra.Command {
	env := &cli.Env{In: in, Out: out, Err: errOut}
	g := &globals{}
	cmd := &cobra.Command{
		Use:   "graylanectl",
		Short: "Control a Graylane cluster: services, canary weights, pins, members",
		Long: `graylanectl talks to any Graylane agent of a cluster. Writes sent to a
follower are forwarded to the leader; --wait on a write returns once every
live node applied it to its kernel.

Exit codes: 0 done, 1 failed (the agent refused, or could not be reached),
2 a usage mistake (nothing was sent).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cli.Args(cobra.NoArgs),
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.configure(env, getenv)
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.SetIn(in)
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	// Every flag mistake (unknown flag, bad value) is a usage error; main
	// adds the pointer to --help.
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return cli.Usagef("%s%v", cli.Where(c), err)
	})
	g.addFlags(cmd)
	cmd.CompletionOptions.DisableDefaultCmd = true

	cmd.AddCommand(
		apply.New(env),
		get.New(env),
		remove.New(env),
		setweight.New(env),
		status.New(env),
		pin.New(env),
		members.New(env),
		rollout.New(env),
		mirror.New(env),
		capture.New(env),
		shadow.New(env),
		replay.New(env),
		flows.New(env),
		explain.New(env),
		audit.New(env),
		completion.New(env),
		versionCommand(env),
	)
	return cmd
}

// globals holds the global flags: which agent to talk to, how, and how to
// print its answers.
type globals struct {
	server, token, caFile, format string
	timeout                       time.Duration
	consistent                    bool
}

func (g *globals) addFlags(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&g.server, "server", api.DefaultServer, "the agent's API: unix:///path/to/socket or https://host:port")
	pf.StringVar(&g.token, "token", "", "bearer token for an https server (default: $"+TokenEnv+")")
	pf.StringVar(&g.caFile, "ca", "", "PEM file of the CA that signed the https server's certificate")
	pf.DurationVar(&g.timeout, "timeout", 30*time.Second, "bound on each request to the agent")
	pf.BoolVar(&g.consistent, "consistent", false, "read from the leader (sees every committed write) instead of the local agent")
	pf.StringVarP(&g.format, "output", "o", "table", "output format: table, json or yaml")
}

// configure checks the global flags once they are parsed and sets env's
// format, server, timeout and Connect from them.
func (g *globals) configure(env *cli.Env, getenv func(string) string) error {
	f, err := printer.ParseFormat(g.format)
	if err != nil {
		return &cli.UsageError{Err: err}
	}
	if g.timeout <= 0 {
		return cli.Usagef("--timeout %v: give a positive duration, such as 30s", g.timeout)
	}
	if g.token == "" {
		g.token = getenv(TokenEnv) // not a flag default: help must not print it
	}
	env.Format, env.Server, env.Timeout = f, g.server, g.timeout
	env.Connect = g.connect
	return nil
}

// connect makes a client of the agent, with a timeout of at least
// minTimeout.
func (g *globals) connect(minTimeout time.Duration) (*api.Client, error) {
	opts := api.ClientOptions{Server: g.server, Token: g.token, Timeout: max(g.timeout, minTimeout), Consistent: g.consistent}
	if g.caFile != "" {
		pool, err := loadCA(g.caFile)
		if err != nil {
			return nil, err
		}
		opts.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	}
	c, err := api.NewClient(opts)
	if err != nil {
		return nil, &cli.UsageError{Err: err}
	}
	return c, nil
}

func versionCommand(env *cli.Env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print graylanectl's version",
		Args:  cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := struct {
				Version string `json:"version"`
			}{version.Version}
			return env.Print(v, func(t *printer.Tab) { t.Line("graylanectl %s", v.Version) })
		},
	}
}

func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, &cli.UsageError{Err: fmt.Errorf("--ca: %w", err)}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &cli.UsageError{Err: errors.New("--ca " + path + ": no PEM certificate in it")}
	}
	return pool, nil
}
