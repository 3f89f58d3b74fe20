// Command tempalias hands out self-destructing email aliases: an HTTP API
// and web page create them, an SMTP server relays mail for them through a
// smarthost until they run out of days or uses.
//
// Usage:
//
//	tempalias [-config FILE]                 run the service
//	tempalias check-config [-config FILE]    check the configuration
//	tempalias create [-config FILE] -target ADDR [-days N] [-max-usage N]
//	tempalias list [-config FILE]            live aliases
//	tempalias show [-config FILE] ID
//	tempalias change [-config FILE] [-days N] [-max-usage N] ID
//	tempalias revoke [-config FILE] ID
//	tempalias backup [-config FILE] FILE     consistent copy of the data file
//	tempalias export [-config FILE] [FILE|-] the store as an engine-neutral stream
//	tempalias import [-config FILE] FILE|-   an export into a new, stopped store
//	tempalias store-format [-config FILE] [-raise]  the etcd cluster's record format
//	tempalias version                        version, commit, build date
//	tempalias help [COMMAND]                 the commands, or one's flags
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/tempalias/tempalias/admin"
	"github.com/tempalias/tempalias/config"
	"github.com/tempalias/tempalias/httpd"
)

func main() {
	// The live heap is small (aliases live in bbolt's mmap, messages are
	// streamed through fixed buffers), so collecting less often costs
	// little memory; it made durable creations ~25% cheaper in
	// BenchmarkCreateHTTP. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	var ue usageError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		// The message and the usage are already out, as flag's are.
		stop()
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "tempalias:", err)
		stop()
		os.Exit(1)
	}
}

// usageError is a command line that does not parse: exit status 2, the
// message and the usage already written.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// command is a subcommand: its name, its arguments after the flags, and
// what it does in one line.
type command struct{ name, args, summary string }

var commands = []command{
	{"serve", "", "run the service (the default when no command is given)"},
	{"check-config", "", "check the configuration and its secret files; names the first bad key"},
	{"create", "", "create an alias"},
	{"list", "", "list live aliases with their remaining uses and expiry"},
	{"show", "ID", "show one alias, live or used up (with its refusals)"},
	{"change", "ID", "change an alias: valid -days from now, -max-usage in all, -allow-from senders"},
	{"revoke", "ID", "revoke an alias now"},
	{"backup", "FILE", "write a consistent copy of the data file, also while the service runs (bolt engine)"},
	{"export", "[FILE|-]", "write every alias, swept id, verified target and the limits' counts as JSON lines (default: to standard output), also while the service runs"},
	{"import", "FILE|-", "read an export into a new store (another host, or the etcd engine) while no server runs on it"},
	{"store-format", "", "show the etcd cluster's record format; -raise moves it to this version's, once every host runs this version"},
	{"version", "", "print the version, commit, build date and Go version"},
	{"help", "[COMMAND]", "list the commands, or show one command's flags"},
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// usage lists every command, one line each.
func usage(w io.Writer) {
	fmt.Fprint(w, `tempalias hands out self-destructing email aliases: an HTTP API and web
page create them, an SMTP server relays mail to them until they run out.

Usage: tempalias [COMMAND] [-config FILE] [ARGUMENTS]

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprint(w, `
Without -config the built-in defaults apply (they are tempalias.toml):
HTTP on 127.0.0.1:8080, SMTP on 127.0.0.1:2525, and mail goes into the
Maildir ./tempalias-mail instead of a smarthost.

"tempalias help COMMAND" or "tempalias COMMAND -h" shows a command's flags.
`)
}

// run is the whole program, minus process exit, so tests can drive it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			usage(stdout)
			return nil
		case "-version", "--version":
			args = append([]string{"version"}, args[1:]...)
		}
	}
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if name == "help" {
		if len(args) == 0 {
			usage(stdout)
			return nil
		}
		if len(args) > 1 {
			fmt.Fprintf(stderr, "tempalias help: one command at a time, got %q\n", args)
			return usageError{}
		}
		if args[0] == "help" || strings.HasPrefix(args[0], "-") {
			usage(stdout)
			return nil
		}
		name, args = args[0], []string{"-h"}
	}
	cmd, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "tempalias: unknown command %q\n\n", name)
		usage(stderr)
		return usageError{}
	}
	fs := flag.NewFlagSet("tempalias "+name, flag.ContinueOnError)
	// flag writes to out: the help asked for goes to stdout, a mistake's
	// message and usage to stderr.
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.Usage = func() {
		fmt.Fprintf(&out, "tempalias %s: %s\n\nUsage: tempalias %s", name, cmd.summary, name)
		if hasFlags := name != "version"; hasFlags {
			fmt.Fprint(&out, " [FLAGS]")
		}
		if cmd.args != "" {
			fmt.Fprint(&out, " "+cmd.args)
		}
		fmt.Fprintln(&out)
		if name != "version" {
			fmt.Fprintln(&out, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	var configPath *string
	if name != "version" {
		configPath = fs.String("config", "", "TOML configuration `file` (default: the built-in defaults, see tempalias.toml)")
	}
	var target, allowFrom string
	var days, maxUsage int
	var lockSender, raise bool
	if name == "create" {
		fs.StringVar(&target, "target", "", "the `address` mail is forwarded to (required)")
		fs.IntVar(&days, "days", 0, "lifetime in days (default limits.default_days)")
		fs.IntVar(&maxUsage, "max-usage", 0, "most messages relayed (default: no limit by count)")
		fs.StringVar(&allowFrom, "allow-from", "", "take mail only from these `senders`: comma-separated domains (with their subdomains) or addresses, at most 10")
		fs.BoolVar(&lockSender, "lock-sender", false, "the domain of the first message delivered becomes -allow-from, if that is empty")
	}
	if name == "change" {
		fs.IntVar(&days, "days", 0, "valid for this many days from now (1 to limits.max_days)")
		fs.IntVar(&maxUsage, "max-usage", 0, "the new total of messages relayed, at least those relayed and under way (1 to limits.max_usage)")
		fs.StringVar(&allowFrom, "allow-from", "", "take mail only from these `senders` from now on: comma-separated domains (with their subdomains) or addresses, at most 10; -allow-from= (empty) takes mail from anyone again")
	}
	if name == "store-format" {
		fs.BoolVar(&raise, "raise", false, "write records in this version's format from now on and rewrite the older ones (every host of the cluster must run this version or a later one)")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, err := stdout.Write(out.Bytes())
			return err
		}
		stderr.Write(out.Bytes())
		return usageError{msg: err.Error()}
	}
	wantArgs := 0
	if cmd.args != "" {
		wantArgs = 1
	}
	optional := strings.HasPrefix(cmd.args, "[")
	if fs.NArg() > wantArgs || fs.NArg() < wantArgs && !optional {
		if fs.NArg() > wantArgs {
			fmt.Fprintf(stderr, "tempalias %s: unexpected argument %q\n\n", name, fs.Arg(wantArgs))
		} else {
			fmt.Fprintf(stderr, "tempalias %s: missing %s\n\n", name, cmd.args)
		}
		fs.Usage()
		stderr.Write(out.Bytes())
		return usageError{}
	}
	if name == "version" {
		_, err := io.WriteString(stdout, buildVersion().String())
		return err
	}
	load := config.LoadForAdmin // admin commands need no secrets
	if name == "serve" || name == "check-config" {
		load = config.Load
	}
	cfg, err := load(*configPath)
	if err != nil {
		return err
	}
	switch name {
	case "serve":
		return serve(ctx, cfg, *configPath, cfg.Logger(stderr))
	case "check-config":
		if cfg.TLS.CertFile != "" {
			if _, err := loadCerts(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "configuration %s is valid; %s\n", config.Source(*configPath), cfg.MailDestination())
		return nil
	case "store-format":
		return storeFormat(ctx, cfg, raise, stdout)
	}
	cmdLine := admin.Command{Name: name, Args: fs.Args()}
	fs.Visit(func(f *flag.Flag) {
		switch {
		case name == "create" && f.Name == "days":
			cmdLine.Create.Days = &days
		case name == "create" && f.Name == "max-usage":
			cmdLine.Create.MaxUsage = &maxUsage
		case name == "change" && f.Name == "days":
			cmdLine.Change.Days = &days
		case name == "change" && f.Name == "max-usage":
			cmdLine.Change.MaxUsage = &maxUsage
		case name == "create" && f.Name == "allow-from":
			cmdLine.Create.AllowFrom = senderList(allowFrom)
		case name == "create" && f.Name == "lock-sender":
			cmdLine.Create.LockSender = lockSender
		case name == "change" && f.Name == "allow-from":
			list := senderList(allowFrom)
			cmdLine.Change.AllowFrom = &list
		}
	})
	cmdLine.Create.Target = target
	return admin.Run(admin.Config{
		Socket:  cfg.AdminSocket(),
		Domains: cfg.Domains,
		Engine:  cfg.Store.Engine,
		Limits:  cfg.AliasLimits(),
		Open: func() (admin.Opened, error) {
			return openStore(cfg, cfg.Logger(os.Stderr))
		},
	}, cmdLine, stdout)
}

// senderList is an -allow-from value as a list: its comma-separated
// entries, each checked by the alias rules (an empty one is refused
// there, naming it); an empty value is the empty list, which clears.
func senderList(v string) []string {
	if strings.TrimSpace(v) == "" {
		return []string{}
	}
	return strings.Split(v, ",")
}

// revokeLink makes the X-Tempalias-Revoke links of relayed mail, which
// need the page's public address: without http.public_url, none.
func revokeLink(publicURL string, key []byte) func(id string) string {
	if publicURL == "" {
		return nil
	}
	return func(id string) string { return httpd.RevokeLink(publicURL, key, id) }
}

// listeners are the sockets handed over by systemd, by name.
func activated() (map[string][]net.Listener, error) {
	lns, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("systemd socket activation: %w", err)
	}
	if err := checkNames(lns); err != nil {
		return nil, err
	}
	return lns, nil
}

// checkNames refuses sockets handed over under a name tempalias does not
// serve: left alone one would be held open and never served, while
// tempalias listened elsewhere (systemd names a socket after its unit
// unless FileDescriptorName= says otherwise). Every socket is closed
// then, the well-named ones too: nobody will serve them either.
func checkNames(lns map[string][]net.Listener) error {
	for name := range lns {
		if name != "http" && name != "https" && name != "smtp" {
			for _, l := range lns {
				for _, ln := range l {
					ln.Close()
				}
			}
			return fmt.Errorf("systemd socket activation: a socket named %q was handed over; name sockets http, https or smtp with FileDescriptorName=", name)
		}
	}
	return nil
}

// listen returns the socket systemd handed over under name, or listens on
// addr when there is none.
func listen(handed map[string][]net.Listener, name, key, addr string) (net.Listener, error) {
	if lns := handed[name]; len(lns) > 0 {
		for _, extra := range lns[1:] {
			extra.Close()
		}
		return lns[0], nil
	}
	lc := listenConfig(name)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return ln, nil
}

// listenConfig is how the listener for name is opened. SMTP connections
// get no TCP keep-alive: every SMTP session is bounded by deadlines of
// its own (smtp.read_timeout between commands and for each read of a
// message, the data and transaction timeouts), which drop a peer that
// vanished anyway, while Go's default (probes after 15 s) costs four
// setsockopt calls on every accepted connection, most of them refusals
// that last a few milliseconds. HTTP is left as it was. A socket handed
// over by systemd keeps Go's default: a file listener cannot be told
// otherwise.
func listenConfig(name string) net.ListenConfig {
	if name == "smtp" {
		return net.ListenConfig{KeepAlive: -1}
	}
	return net.ListenConfig{}
}
