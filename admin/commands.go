package admin

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
)

// Command is an admin command line, parsed: its name, its arguments
// after the flags, and the request that create or change make.
type Command struct {
	Name   string
	Args   []string
	Create alias.Request       // for create
	Change alias.ChangeRequest // for change
}

// Config is what the commands need to know of the service.
type Config struct {
	Socket  string   // where a running server answers (config admin.socket)
	Domains []string // alias domains; new aliases use the first
	Engine  string   // store.engine, for messages
	Limits  alias.Limits
	// Open opens the store when no server answers on Socket.
	Open func() (Opened, error)
}

// Opened is a store a command opened itself.
type Opened interface {
	Store
	Import(ctx context.Context, r io.Reader) error
	Stats(ctx context.Context) (store.Stats, error)
	Close() error
}

// Run runs the admin command cmd, writing what it shows to stdout.
func Run(cfg Config, cmd Command, stdout io.Writer) error {
	name, args, req, chg := cmd.Name, cmd.Args, cmd.Create, cmd.Change
	if name == "import" {
		return runImport(cfg, args[0], stdout)
	}
	ops, closeOps, err := open(cfg)
	if err != nil {
		return err
	}
	defer closeOps()
	switch name {
	case "create":
		a, err := ops.Create(req)
		if err != nil {
			return err
		}
		return printJSON(stdout, a)
	case "list":
		list, err := ops.List()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATUS\tTARGET\tEXPIRES\tREMAINING")
		for _, a := range list {
			rem := "-"
			if a.Remaining != nil {
				rem = fmt.Sprintf("%d/%d", *a.Remaining, *a.MaxUsage)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.ID, a.Status, a.Target, a.Expires, rem)
		}
		return tw.Flush()
	case "show", "revoke":
		if len(args) != 1 {
			return fmt.Errorf("usage: tempalias %s [-config FILE] ID", name)
		}
		if name == "revoke" {
			if err := ops.Revoke(args[0]); err != nil {
				return fmt.Errorf("revoke %s: %w", args[0], err)
			}
			fmt.Fprintf(stdout, "revoked %s\n", args[0])
			return nil
		}
		a, err := ops.Show(args[0])
		if err != nil {
			return fmt.Errorf("show %s: %w", args[0], err)
		}
		return printJSON(stdout, a)
	case "change":
		if len(args) != 1 {
			return errors.New("usage: tempalias change [-config FILE] [-days N] [-max-usage N] [-allow-from SENDERS] ID")
		}
		a, err := ops.Change(args[0], chg)
		if err != nil {
			return fmt.Errorf("change %s: %w", args[0], err)
		}
		return printJSON(stdout, a)
	case "backup":
		if len(args) != 1 {
			return errors.New("usage: tempalias backup [-config FILE] FILE")
		}
		if cfg.Engine == "etcd" {
			return errors.New("backup: the etcd engine's store is the cluster: back it up with `etcdctl snapshot save FILE` (or move its aliases with `tempalias export`)")
		}
		return backupTo(ops, args[0], stdout)
	case "export":
		if len(args) == 0 || args[0] == "-" {
			return ops.Export(stdout)
		}
		return writeAtomically(args[0], "export", ops.Export, stdout)
	}
	return fmt.Errorf("unknown command %q", name)
}

// backupTo writes a backup to path through a temporary file, so that a
// failed backup never leaves a truncated file under the final name.
func backupTo(ops Ops, path string, stdout io.Writer) error {
	return writeAtomically(path, "backup", ops.Backup, stdout)
}

// writeAtomically writes what write produces to path through a temporary
// file, renamed only once it is whole and synced.
func writeAtomically(path, what string, write func(io.Writer) error, stdout io.Writer) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tempalias-"+what+"-*")
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	fmt.Fprintf(stdout, "%s written to %s\n", what, path)
	return nil
}

// runImport reads an export (path, or "-" for standard input) into the
// store the configuration names, which must be new and not in use: a
// running server holds its keys in memory, so a server answering on the
// admin socket is refused (for etcd, no host may run on the cluster; the
// command cannot see the other hosts).
func runImport(cfg Config, path string, stdout io.Writer) error {
	socket := cfg.Socket
	if conn, err := net.DialTimeout("unix", socket, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("import: a server is running on this store (it answers on %s): stop it, import, then start it", socket)
	}
	var in io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		in = f
	}
	st, err := cfg.Open()
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Import(context.Background(), bufio.NewReaderSize(in, 64<<10)); err != nil {
		if errors.Is(err, store.ErrImportNotEmpty) {
			return fmt.Errorf("%w (store.engine %q)", err, cmp.Or(cfg.Engine, "bolt"))
		}
		return err
	}
	stats, err := st.Stats(context.Background())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %d aliases, %d ids issued in all\n", stats.Aliases, stats.Issued)
	return st.Close()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// open reaches the aliases: through the running server if one answers
// on the admin socket, else by opening the store. close must be called.
func open(cfg Config) (ops Ops, close func(), err error) {
	if conn, err := net.DialTimeout("unix", cfg.Socket, time.Second); err == nil {
		conn.Close()
		return NewRemote(cfg.Socket), func() {}, nil
	}
	st, err := cfg.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("%w (and no server answers on %s)", err, cfg.Socket)
	}
	limits := func() alias.Limits { return cfg.Limits }
	return Local{Store: st, Domains: cfg.Domains, Limits: limits, Now: time.Now}, func() { st.Close() }, nil
}
