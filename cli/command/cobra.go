package command

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"slipway.dev/platform/buildinfo"
	"slipway.dev/slipctl/exitcode"
)

// This file wires the declarative command tree (commands.go) into cobra:
// parsing, help, completion. The commands themselves know nothing of cobra.

// execute builds the cobra tree for tree and runs args through it.
func (a *app) execute(ctx context.Context, tree *command, args []string) error {
	root := a.cobra(tree, nil)
	a.root = root
	addGlobals(root.PersistentFlags(), &a.g, a.env)
	_ = root.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"text\tfor people", "json\tprotojson, for scripts"}, cobra.ShellCompDirectiveNoFileComp
	})
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if a.g.output != "text" && a.g.output != "json" {
			return exitcode.Usagef("%s: -o must be text or json, got %q", cmd.CommandPath(), a.g.output)
		}
		return nil
	}
	root.SetHelpFunc(func(cmd *cobra.Command, _ []string) { a.help(cmd) })
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return exitcode.Usagef("%s: %s (see %s --help)", cmd.CommandPath(), flagError(err), cmd.CommandPath())
	})
	root.Version = buildinfo.Get().String()
	root.SetVersionTemplate("slipctl {{.Version}}\n")
	root.CompletionOptions.DisableDefaultCmd = true // our own "completion", with help like every command
	root.SetArgs(longFlags(args, root))
	root.SetIn(a.env.Stdin)
	root.SetOut(a.env.Stdout)
	root.SetErr(a.env.Stderr)
	return root.ExecuteContext(ctx)
}

// cobra turns one command of the tree, with its subcommands, into a
// cobra.Command.
func (a *app) cobra(c *command, parent *cobra.Command) *cobra.Command {
	cc := &cobra.Command{
		Use:                   strings.TrimSpace(c.name + " " + c.args),
		Short:                 c.summary,
		Long:                  c.help,
		Example:               c.examples,
		SilenceErrors:         true,
		SilenceUsage:          true,
		DisableFlagsInUseLine: true,
	}
	if parent != nil {
		parent.AddCommand(cc)
	}
	o := &opts{}
	if c.flags != nil {
		c.flags(cc.Flags(), o)
	}
	if c.subs != nil {
		for _, s := range c.subs {
			a.cobra(s, cc)
		}
		cc.Args = cobra.ArbitraryArgs
		cc.SuggestionsMinimumDistance = 2
		cc.RunE = func(cmd *cobra.Command, args []string) error { return groupRun(cmd, args) }
		cc.ValidArgsFunction = func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return cc
	}
	cc.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) < c.minArgs || len(args) > c.maxArgs {
			path := cmd.CommandPath()
			return exitcode.Usagef("usage: %s %s (see %s --help)", path, c.args, path)
		}
		return nil
	}
	cc.RunE = func(cmd *cobra.Command, args []string) error { return c.run(cmd.Context(), a, o, args) }
	cc.ValidArgsFunction = func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if c.complete == nil || len(args) >= c.maxArgs {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return c.complete(cmd.Context(), a, args), cobra.ShellCompDirectiveNoFileComp
	}
	return cc
}

// groupRun runs a command that only groups subcommands: "help SUB" shows
// the subcommand's help; anything else is a usage error naming the
// closest subcommand.
func groupRun(cmd *cobra.Command, args []string) error {
	path := cmd.CommandPath()
	if len(args) == 0 {
		return exitcode.Usagef("%s: missing command (see %s --help)", path, path)
	}
	if args[0] == "help" {
		target := cmd
		if len(args) > 1 {
			sub, _, err := cmd.Find(args[1:])
			if err != nil || sub == cmd {
				return exitcode.Usagef("%s: unknown command %q (see %s --help)", path, args[1], path)
			}
			target = sub
		}
		return target.Help()
	}
	hint := ""
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		hint = fmt.Sprintf("; did you mean %q?", s[0])
	}
	return exitcode.Usagef("%s: unknown command %q%s (see %s --help)", path, args[0], hint, path)
}

var (
	unknownLong  = regexp.MustCompile(`^unknown flag: --(\S+)$`)
	unknownShort = regexp.MustCompile(`^unknown shorthand flag: '.' in -(\S+)$`)
)

// flagError words pflag's errors about unknown flags the way slipctl
// always has ("flag provided but not defined: -bogus"), which scripts may
// match.
func flagError(err error) string {
	msg := err.Error()
	if m := unknownLong.FindStringSubmatch(msg); m != nil {
		return "flag provided but not defined: -" + m[1]
	}
	if m := unknownShort.FindStringSubmatch(msg); m != nil {
		return "flag provided but not defined: -" + m[1]
	}
	var ne *pflag.NotExistError
	if errors.As(err, &ne) {
		return "flag provided but not defined: -" + ne.GetSpecifiedName()
	}
	return msg
}

// longFlags rewrites "-name" and "-name=value" to "--name..." for every
// long flag name of the tree, so the single-dash spelling of Go's flag
// package, which slipctl accepted before, keeps working. Arguments after
// "--" are left alone.
func longFlags(args []string, root *cobra.Command) []string {
	names := map[string]bool{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.Flags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	out := make([]string, len(args))
	copy(out, args)
	for i, arg := range out {
		if arg == "--" {
			break
		}
		if len(arg) < 3 || arg[0] != '-' || arg[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(arg[1:], "=")
		if len(name) > 1 && names[name] {
			out[i] = "-" + arg
		}
	}
	return out
}
