package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/tempalias/tempalias/config"
	"github.com/tempalias/tempalias/store"
	"github.com/tempalias/tempalias/store/boltstore"
	"github.com/tempalias/tempalias/store/etcdstore"
)

// openStore opens the engine store.engine names. On failure the engine
// is nil, never a nil pointer of an engine's type.
func openStore(cfg *config.Config, log *slog.Logger) (store.Engine, error) {
	if cfg.Store.Engine == "etcd" {
		return openEtcd(cfg, log)
	}
	st, err := boltstore.Open(cfg.DataFile, boltstore.Options{
		IDMinLength:      cfg.Limits.IDMinLength,
		GuessProbability: cfg.Limits.IDGuessProbability,
		OpenTimeout:      cfg.Store.OpenTimeout.Duration,
		// The per-target index serves limits.aliases_per_target alone;
		// without that limit a creation writes a page less.
		NoTargetIndex: cfg.Limits.AliasesPerTarget == 0,
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

func openEtcd(cfg *config.Config, log *slog.Logger) (store.Engine, error) {
	st, err := openEtcdStore(cfg, log)
	if err != nil {
		return nil, err
	}
	return st, nil
}

func openEtcdStore(cfg *config.Config, log *slog.Logger) (*etcdstore.Store, error) {
	e := cfg.Etcd
	opts := etcdstore.Options{
		Endpoints:        e.Endpoints,
		Prefix:           e.Prefix,
		Username:         e.Username,
		Password:         e.Password,
		DialTimeout:      e.DialTimeout.Duration,
		RequestTimeout:   e.RequestTimeout.Duration,
		LeaseTTL:         e.LeaseTTL.Duration,
		IDMinLength:      cfg.Limits.IDMinLength,
		GuessProbability: cfg.Limits.IDGuessProbability,
		Logger:           log,
	}
	if e.CAFile != "" {
		cert, err := tls.LoadX509KeyPair(e.CertFile, e.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd.cert_file: %w", err)
		}
		ca, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("etcd.ca_file: %s holds no PEM certificate", e.CAFile)
		}
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return etcdstore.Open(context.Background(), opts)
}

// storeFormat is the store-format command: the etcd cluster's record
// format and its records by format, and with raise, the format moved to
// this version's and the older records rewritten (etcdstore.RaiseFormat).
// A running service needs no restart: every host reads both formats and
// writes the raised one from its next read on. The bolt engine upgrades
// its data file itself when it opens it.
func storeFormat(ctx context.Context, cfg *config.Config, raise bool, stdout io.Writer) error {
	if cfg.Store.Engine != "etcd" {
		return errors.New("store-format: only the etcd engine keeps a record format of its own (store.engine = \"etcd\"); the bolt engine upgrades its data file when it opens it")
	}
	st, err := openEtcdStore(cfg, cfg.Logger(os.Stderr))
	if err != nil {
		return fmt.Errorf("store-format: %w", err)
	}
	defer st.Close()
	var f etcdstore.Formats
	if raise {
		f, err = st.RaiseFormat(ctx)
	} else {
		f, err = st.Formats(ctx)
	}
	if err != nil {
		return fmt.Errorf("store-format: %w", err)
	}
	names := map[int]string{1: "JSON", 2: "binary"}
	if raise {
		fmt.Fprintf(stdout, "record format %d (%s): %d records rewritten\n", f.Marker, names[f.Marker], f.Rewritten)
	} else {
		fmt.Fprintf(stdout, "record format %d (%s)\n", f.Marker, names[f.Marker])
	}
	fmt.Fprintf(stdout, "records: %d JSON, %d binary, %d swept ids\n", f.JSON, f.Binary, f.Tombstones)
	return st.Close()
}
