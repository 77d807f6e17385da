package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"slipway.dev/coordinator/keyring"
)

const keyringUsage = `slipway-coordinator keyring manages the keyring file that encrypts secrets
and configs (-keyring-file). Every coordinator of a cluster needs the same
keys: make the file once, copy it (mode 0600) to every coordinator, and do
each change on every copy (or on one and copy it again).

  keyring init   -file F        create F with one new primary key
  keyring list   -file F        list the key ids (never the keys)
  keyring add    -file F [-primary]
                                add a new key (and make it primary)
  keyring use    -file F ID     make key ID primary
  keyring remove -file F ID     remove key ID (not the primary)

Rotating the key: 'add -primary' on one copy, copy the file to every
coordinator (a running coordinator reads the file again when it changes),
then 'slipctl secret rekey' re-encrypts every stored version with the new
key; only then 'remove' the old key everywhere.
`

func keyringCmd(args []string, out io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(out, keyringUsage)
		return fmt.Errorf("keyring: a command is required (init, list, add, use, remove)")
	}
	cmd := args[0]
	fs := flag.NewFlagSet("keyring "+cmd, flag.ContinueOnError)
	fs.SetOutput(out)
	file := fs.String("file", os.Getenv("SLIPWAY_KEYRING_FILE"), "the keyring file (default $SLIPWAY_KEYRING_FILE)")
	primary := fs.Bool("primary", false, "add: make the new key primary")
	fs.Usage = func() { fmt.Fprint(out, keyringUsage); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("keyring %s: -file is required", cmd)
	}
	id := func() (string, error) {
		if fs.NArg() != 1 {
			return "", fmt.Errorf("keyring %s: give one key id", cmd)
		}
		return fs.Arg(0), nil
	}
	switch cmd {
	case "init":
		k, err := keyring.Init(*file)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "created %s with primary key %s; copy it (mode 0600) to every coordinator and start each with -keyring-file\n", *file, k.ID)
	case "list":
		kr, err := keyring.Read(*file)
		if err != nil {
			return err
		}
		for _, k := range kr.Keys {
			p := ""
			if k.Primary {
				p = "  primary"
			}
			fmt.Fprintf(out, "%s  created %s%s\n", k.ID, k.Created.Format("2006-01-02T15:04:05Z"), p)
		}
	case "add":
		k, err := keyring.Add(*file, *primary)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "added key %s (primary: %v)\n", k.ID, *primary)
	case "use":
		k, err := id()
		if err != nil {
			return err
		}
		if err := keyring.Use(*file, k); err != nil {
			return err
		}
		fmt.Fprintf(out, "key %s is primary\n", k)
	case "remove":
		k, err := id()
		if err != nil {
			return err
		}
		if err := keyring.Remove(*file, k); err != nil {
			return err
		}
		fmt.Fprintf(out, "removed key %s\n", k)
	default:
		fmt.Fprint(out, keyringUsage)
		return fmt.Errorf("keyring: unknown command %q", cmd)
	}
	return nil
}
